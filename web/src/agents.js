// Agent scorecard (issue 19, docs/metrics.md "Contact center"): call figures per agent or
// queue with first-contact resolution, and the coaching list of calls whose customer's tone
// worsened, each opening its transcript with the customer's turns highlighted. Agent ids,
// queues and transcripts come from senders and customers: every value goes in as a text node.

import { currentLang, formatTime, t } from './i18n.js';
import { el } from './dom.js';

const WORDS = {
  zh: {
    by: '按', agent: '坐席', queue: '队列', days: '时间范围', none: '（未填）',
    other: (n) => `其他（${n} 个）`, total: '合计', fcr: '首次解决率', escalations: '升级威胁',
    coaching: '辅导清单：客户情绪恶化的通话', transcript: '查看通话记录', tone: '情绪',
    customer: '客户', agent_turn: '坐席', ivr: 'IVR', no_calls: '该范围内没有通话。',
    no_coaching: '没有情绪恶化的通话。', all_agents: '全部坐席',
  },
  en: {
    by: 'By', agent: 'Agent', queue: 'Queue', days: 'Range', none: '(not given)',
    other: (n) => `other (${n})`, total: 'Total', fcr: 'First-contact resolution',
    escalations: 'Escalation threats', coaching: 'Coaching: calls whose customer tone worsened',
    transcript: 'Transcript', tone: 'Tone', customer: 'Customer', agent_turn: 'Agent',
    ivr: 'IVR', no_calls: 'No calls in this range.', no_coaching: 'No call worsened.',
    all_agents: 'all agents',
  },
};

const word = (key, ...args) => {
  const value = (WORDS[currentLang()] ?? WORDS.zh)[key];
  return typeof value === 'function' ? value(...args) : value;
};

const RANGES = [1, 7, 30];
const COLUMNS = [
  ['call_count', (v) => fmtInt(v)], ['mean_sentiment', (v) => fmtNum(v)],
  ['tone_worsened_share', (v) => fmtPct(v)], ['tone_improved_share', (v) => fmtPct(v)],
  ['mean_hold_s', (v) => fmtNum(v, 0)], ['mean_silence_s', (v) => fmtNum(v, 0)],
  ['transfers_per_call', (v) => fmtNum(v)],
];
const fmtNum = (v, d = 2) => (v === null || v === undefined ? '–' : Number(v).toFixed(d));
const fmtPct = (v) => (v === null || v === undefined ? '–' : `${(100 * v).toFixed(1)}%`);
const fmtInt = (v) => (v === null || v === undefined ? '–' : Math.round(v).toLocaleString());


// Renders the scorecard into `view`; `getJson` is the dashboard's fetch (it handles sign-out).
export function renderAgents(view, getJson) {
  let alive = true;
  const state = { by: 'agent', days: 7, agent: null };
  const controls = el('div', { class: 'controls' });
  const card = el('div', { class: 'scroll', id: 'scorecard' });
  const coaching = el('section', { id: 'coaching' });
  view.append(controls, card, coaching);

  const since = () => new Date(Date.now() - state.days * 86400e3).toISOString();

  function drawControls() {
    const by = el('select', { id: 'scorecard-by', onchange: (e) => {
      state.by = e.target.value;
      state.agent = null;
      load();
    } }, ['agent', 'queue'].map((b) => el('option', { value: b, selected: b === state.by }, word(b))));
    const days = el('select', { id: 'scorecard-days', onchange: (e) => {
      state.days = Number(e.target.value);
      load();
    } }, RANGES.map((d) => el('option', { value: d, selected: d === state.days }, `${d}d`)));
    controls.replaceChildren(el('label', { class: 'control' }, `${word('by')} `, by),
      el('label', { class: 'control' }, `${word('days')} `, days));
  }

  async function load() {
    drawControls();
    try {
      const query = new URLSearchParams({ from: since() });
      const body = await getJson(`/v1/contact-center/${state.by}?${query}`);
      if (!alive) return;
      card.replaceChildren(scorecard(body));
      await loadCoaching();
    } catch (error) {
      if (alive) card.replaceChildren(el('p', { class: 'error' }, String(error.message)));
    }
  }

  async function loadCoaching() {
    const query = new URLSearchParams({ from: since(), limit: '20' });
    if (state.agent !== null) query.set(state.by, state.agent);
    const body = await getJson(`/v1/contact-center/coaching?${query}`);
    if (!alive) return;
    coaching.replaceChildren(
      el('h2', { class: 'section' }, word('coaching'), ' ',
        el('small', {}, state.agent === null ? word('all_agents')
          : `${word(state.by)} ${state.agent || word('none')}`)),
      body.calls.length ? el('ul', { class: 'coaching' }, body.calls.map(coachingItem))
        : el('p', { class: 'empty' }, word('no_coaching')));
  }

  function scorecard(body) {
    if (!body.total.call_count) return el('p', { class: 'empty' }, word('no_calls'));
    const row = (label, f, attrs = {}) => el('tr', attrs,
      el('th', { scope: 'row' }, label),
      COLUMNS.map(([name, show]) => el('td', {}, show(f[name]))),
      el('td', {}, fmtInt(f.counts.escalation_threat_count)),
      el('td', { title: `${f.fcr_resolved} / ${f.fcr_calls}` }, fmtPct(f.fcr)));
    return el('table', { class: 'grid scorecard' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, word(state.by)),
        COLUMNS.map(([name]) => el('th', { scope: 'col' }, t(name))),
        el('th', { scope: 'col' }, word('escalations')), el('th', { scope: 'col' }, word('fcr')))),
      el('tbody', {},
        body.values.map((v) => {
          const pick = el('button', { type: 'button', class: 'link', 'data-value': v.value,
            'aria-pressed': String(state.agent === v.value), onclick: () => {
              state.agent = state.agent === v.value ? null : v.value;
              for (const b of card.querySelectorAll('button.link')) {
                b.setAttribute('aria-pressed', String(b.dataset.value === state.agent));
              }
              loadCoaching();
            } }, v.value || word('none'));
          return row(pick, v, { 'data-value': v.value });
        }),
        body.other ? row(word('other', body.other.folded_values), body.other, { class: 'other' }) : null,
        row(word('total'), body.total, { class: 'total' })));
  }

  load();
  return () => { alive = false; };
}

function coachingItem(call) {
  const speakerWord = { customer: word('customer'), agent: word('agent_turn'), ivr: word('ivr') };
  const turns = call.transcript.map((turn) => el('p', { class: `turn ${turn.speaker}` },
    el('span', { class: 'speaker' }, `${speakerWord[turn.speaker]}：`),
    turn.speaker === 'customer' ? el('mark', {}, turn.text) : turn.text));
  const tone = call.tone ? `${word('tone')} ${fmtNum(call.tone.first)} → ${fmtNum(call.tone.last)}` : '';
  return el('li', { 'data-event-id': call.event_id },
    el('div', {}, `${formatTime(call.occurred_at)} · ${call.touchpoint} · ${word('agent')} `,
      el('strong', {}, call.agent || word('none')), ` · ${call.queue || word('none')} · ${tone}`),
    el('details', { class: 'transcript' }, el('summary', {}, word('transcript')), turns));
}
