// Live state of the page: score rows and alerts merged from the /v1/stream snapshot and pushes.
// Everything that turns rows into the figures shown lives here, so views only lay them out.

export const LIVE_WINDOWS = 15;
export const STAGES = ['售前', '售中', '售后'];
const WINDOW_LABELS = { 60: '1m', 300: '5m', 3600: '1h', 86400: '1d' };

export function windowLabel(seconds) {
  return WINDOW_LABELS[seconds] ?? `${seconds}s`;
}

export class LiveState {
  constructor() {
    this.windowSeconds = 60;
    this.scores = new Map();
    this.alerts = new Map();
    this.cases = new Map();
    this.listeners = new Set();
    this.updatesByTouchpoint = new Map();
  }

  onChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(kind, touched) {
    for (const listener of this.listeners) listener(kind, touched);
  }

  reset(snapshot) {
    this.windowSeconds = snapshot.window_seconds;
    this.scores.clear();
    this.alerts.clear();
    for (const row of snapshot.scores) this.putScore(row);
    for (const row of snapshot.alerts) this.putAlert(row);
    this.emit('snapshot', new Set(this.touchpoints()));
  }

  putScore(row) {
    const key = `${row.touchpoint}|${row.stage}|${row.channel}|${row.window_start}`;
    const old = this.scores.get(key);
    if (old && old.computed_ms > row.computed_ms) return false;
    this.scores.set(key, row);
    return true;
  }

  putAlert(row) {
    const old = this.alerts.get(row.alert_id);
    if (old && old.inserted_ms > row.inserted_ms) return false;
    this.alerts.set(row.alert_id, row);
    return true;
  }

  applyScores(rows) {
    const touched = new Set();
    for (const row of rows) {
      if (this.putScore(row)) {
        touched.add(row.touchpoint);
        this.updatesByTouchpoint.set(row.touchpoint,
          (this.updatesByTouchpoint.get(row.touchpoint) ?? 0) + 1);
      }
    }
    if (touched.size) this.emit('scores', touched);
  }

  applyAlerts(rows) {
    const touched = new Set();
    for (const row of rows) if (this.putAlert(row)) touched.add(row.touchpoint);
    if (touched.size) this.emit('alerts', touched);
  }

  // Cases carry their whole state in every transition; the highest seq is the current one.
  applyCases(rows) {
    let changed = false;
    for (const row of rows) {
      const old = this.cases.get(row.case_id);
      if (old && old.seq >= row.seq) continue;
      this.cases.set(row.case_id, row);
      changed = true;
    }
    if (changed) this.emit('cases', new Set(rows.map((r) => r.touchpoint)));
  }

  touchpoints() {
    const names = new Set();
    for (const row of this.scores.values()) names.add(row.touchpoint);
    return [...names].sort();
  }

  // Rows covering all stages and channels of one touchpoint, oldest first.
  series(touchpoint, stage = '') {
    return [...this.scores.values()]
      .filter((r) => r.touchpoint === touchpoint && r.stage === stage && r.channel === '')
      .sort((a, b) => Date.parse(a.window_start) - Date.parse(b.window_start));
  }

  newestWindow() {
    let newest = 0;
    for (const row of this.scores.values()) newest = Math.max(newest, Date.parse(row.window_start));
    return newest;
  }

  // Figures of the last LIVE_WINDOWS windows (ending at the newest window of any touchpoint),
  // summed from counts so a quiet minute weighs as little as it should.
  summary(touchpoint, stage = '') {
    const end = this.newestWindow();
    const start = end - (LIVE_WINDOWS - 1) * this.windowSeconds * 1000;
    const rows = this.series(touchpoint, stage).filter((r) => Date.parse(r.window_start) >= start);
    return summarise(rows);
  }

  firingAlerts() {
    return [...this.alerts.values()]
      .filter((a) => a.status === 'firing')
      .sort((a, b) => Date.parse(b.fired_at) - Date.parse(a.fired_at));
  }
}

// The metric catalogue (GET /v1/metrics): each metric's unit, range, direction and, for a
// ratio, its formula over the row counts. Set once the page has it.
export const catalogue = { metrics: [] };

export function setCatalogue(metrics) {
  catalogue.metrics = metrics;
}

function inputs(metric) {
  return metric.kind === 'ratio'
    ? [...metric.formula.numerator, ...metric.formula.minus, metric.formula.denominator]
    : [metric.name];
}

// A ratio from counts summed over windows, as the scoring stage derives it from its sums.
function derive(metric, sums) {
  const { numerator, minus, denominator, scale } = metric.formula;
  const base = sums.get(denominator);
  if (!base) return null;
  const add = (names) => names.reduce((total, name) => total + sums.get(name), 0);
  return (scale * (add(numerator) - add(minus))) / base;
}

export function summarise(rows) {
  let volume = 0; let sentiment = 0;
  const sums = new Map(catalogue.metrics.flatMap(inputs).map((name) => [name, 0]));
  for (const r of rows) {
    volume += r.volume;
    sentiment += r.mean_sentiment * r.volume;
    for (const name of sums.keys()) sums.set(name, sums.get(name) + (r[name] ?? 0));
  }
  const figures = Object.fromEntries(catalogue.metrics.map((m) => [m.name,
    m.kind === 'ratio' ? derive(m, sums) : sums.get(m.name)]));
  const mean = volume ? sentiment / volume : null;
  const latest = rows.length ? rows[rows.length - 1] : null;
  const target = latest?.expectations?.find((e) => e.metric === 'mean_sentiment')?.target;
  return {
    nps: null,
    csat: null,
    ...figures,
    volume,
    mean_sentiment: mean,
    experience: mean === null ? null : 5 * (mean + 1),
    // The gap is shown only when the scoring stage provides a target: signed so that
    // negative means worse than expected, as the scoring API reports it.
    gap: target === undefined || mean === null ? null : mean - target,
    target: target ?? null,
  };
}

// Colour band of a gap to the mean-sentiment target (in sentiment units, [-1, 1]).
export function gapBand(gap) {
  if (gap === null) return 'none';
  if (gap >= 0) return 'good';
  if (gap > -0.15) return 'warn';
  return 'bad';
}
