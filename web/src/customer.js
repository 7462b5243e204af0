// Customer timeline (issue 19, docs/dashboard.md "Customer timeline"): every feedback of one
// customer across channels, newest first, with its scores, topics and the cases linked to it,
// opened from a case (alerts view) or a feedback row (drill). The id is the pseudonymous one
// the feedback and cases carry. Also the callback KPIs card of the alerts view (docs/metrics.md
// "Callback KPIs"). Texts, ids and names come from customers and senders: every value goes in
// as a text node.

import { currentLang, formatTime } from './i18n.js';
import { el } from './dom.js';

const WORDS = {
  zh: {
    title: '客户时间线', back: '返回', cases: '工单', no_cases: '没有关联工单。',
    none: '该客户没有反馈（或不在你的权限范围内）。', more: '更早的反馈', callback: '回访',
    churn_risk: '流失风险', other_case: '工单', negative: '负面', neutral: '中性',
    positive: '正面', linked: '关联工单',
    kpis: '回访指标（近 30 天）', detractors: '贬损者', sla_share: 'SLA 内回访占比',
    recovery: '挽回率', kpis_missing: '回访指标不可用',
  },
  en: {
    title: 'Customer timeline', back: 'Back', cases: 'Cases', no_cases: 'No linked case.',
    none: 'No feedback of this customer (or none you may see).', more: 'Older feedback',
    callback: 'callback', churn_risk: 'churn risk', other_case: 'case', negative: 'negative',
    neutral: 'neutral', positive: 'positive', linked: 'Linked case',
    kpis: 'Callbacks (last 30 days)', detractors: 'Detractors', sla_share: 'Called back within SLA',
    recovery: 'Recovery rate', kpis_missing: 'Callback KPIs unavailable',
  },
};

const word = (key) => (WORDS[currentLang()] ?? WORDS.zh)[key] ?? key;
const PAGE_SIZE = 20;

export const customerLink = (customerId, label) => el('a', {
  href: `#/customer/${encodeURIComponent(customerId)}`, class: 'customer-link',
  'data-customer-id': customerId }, label);

const share = (value) => (value === null || value === undefined ? '—' : `${Math.round(Number(value) * 100)}%`);

// The callback KPIs card (GET /v1/customers/kpis, totals over what the caller may see):
// detractors, the share called back within the SLA and the recovery rate.
export function callbackKpis(getJson) {
  const figure = (name, label) => el('div', { class: 'kpi', 'data-figure': name },
    el('span', { class: 'kpi-label' }, label), el('strong', { class: 'kpi-value' }, '…'));
  const figures = [figure('detractors', word('detractors')), figure('callback_sla_share', word('sla_share')),
    figure('recovery_rate', word('recovery'))];
  const status = el('p', { class: 'muted', role: 'status' });
  const card = el('section', { id: 'callback-kpis', class: 'callback-kpis', 'aria-label': word('kpis') },
    el('h3', {}, word('kpis')), el('div', { class: 'kpis' }, figures), status);
  getJson('/v1/customers/kpis?days=30').then(({ total }) => {
    const shown = { detractors: String(total.detractors), callback_sla_share: share(total.callback_sla_share),
      recovery_rate: share(total.recovery_rate) };
    for (const node of figures) node.querySelector('.kpi-value').textContent = shown[node.dataset.figure];
    card.dataset.loaded = 'true';
  }).catch((error) => {
    status.textContent = `${word('kpis_missing')}: ${error.message}`;
  });
  return card;
}

// Renders the timeline of `customerId` into `view`; `getJson` is the dashboard's fetch.
export function renderCustomer(view, customerId, { getJson, topicName }) {
  let stopped = false;
  let cursor = null;
  const known = new Map();
  const cases = el('ul', { id: 'customer-cases', class: 'customer-cases' });
  const list = el('ol', { id: 'timeline', class: 'timeline' });
  const status = el('p', { class: 'muted', role: 'status' });
  const more = el('button', { type: 'button', id: 'timeline-more', hidden: true }, word('more'));
  view.append(
    el('h2', { class: 'section' }, word('title'), ' ', el('code', { id: 'customer-id' }, customerId ?? ''), ' ',
      el('a', { href: '#', class: 'drill-back', onclick: (e) => { e.preventDefault(); history.back(); } },
        `← ${word('back')}`)),
    el('h3', {}, word('cases')), cases, status, list, more);

  const kindWord = (kind) => word(kind ?? 'other_case');

  function drawCases() {
    const rows = [...known.values()];
    cases.replaceChildren(...(rows.length ? rows.map((c) => el('li', {
      'data-case-id': c.case_id, 'data-kind': c.kind ?? '', class: `case-${c.status}` },
    el('strong', {}, kindWord(c.kind)), ` · ${c.status} · ${c.rule_id} · ${c.touchpoint}`,
    c.team ? ` · ${c.team}` : '', ` · ${formatTime(c.opened_at)}`))
      : [el('li', { class: 'muted' }, word('no_cases'))]));
  }

  function item(f) {
    const ratings = [['NPS', f.nps], ['CSAT', f.csat], ['CES', f.ces]]
      .filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k} ${v}`);
    const linked = f.case_ids.map((id) => known.get(id)).filter(Boolean);
    return el('li', { class: `verbatim s-${f.sentiment_label}`, 'data-event-id': f.event_id },
      el('p', { class: 'meta' }, formatTime(f.occurred_at), ' · ', el('strong', {}, f.channel), ' · ',
        f.touchpoint, f.stage ? ` · ${f.stage}` : '', ' · ',
        `${word(f.sentiment_label)} ${Number(f.sentiment).toFixed(2)}`,
        ratings.length ? ` · ${ratings.join(' · ')}` : '',
        f.topics.length ? ` · ${f.topics.map((x) => topicName(x)).join('、')}` : ''),
      el('p', { class: 'text' }, f.text),
      linked.length ? el('p', { class: 'linked' }, `${word('linked')}: `,
        linked.map((c) => el('span', { class: 'case-badge', 'data-case-id': c.case_id },
          `${kindWord(c.kind)} (${c.status})`))) : null);
  }

  async function load() {
    more.hidden = true;
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set('cursor', cursor);
    let body;
    try {
      body = await getJson(`/v1/customers/${encodeURIComponent(customerId ?? '')}/timeline?${query}`);
    } catch (error) {
      if (!stopped) status.textContent = error.message;
      return;
    }
    if (stopped) return;
    for (const c of body.cases) known.set(c.case_id, c);
    drawCases();
    if (!body.items.length && !cursor) status.textContent = word('none');
    list.append(...body.items.map(item));
    list.dataset.loaded = String(list.children.length);
    cursor = body.next_cursor;
    more.hidden = !cursor;
  }

  more.addEventListener('click', load);
  load();
  return () => { stopped = true; };
}
