// Segments and dimensions view (issue 19, docs/metrics.md "Dimensions"): a filter bar with one
// picker per dimension (segment and the deployment's VOC_DIMENSIONS keys) and the figures per
// value of the dimension chosen to group by, with the folded `other` row. Values are names
// senders chose: every one goes in as a text node or an attribute value, never as markup.

import { currentLang, t } from './i18n.js';
import { el } from './dom.js';

const WORDS = {
  zh: {
    group_by: '分组', filter: '筛选', any: '全部', none: '（未填）', other: (n) => `其他（${n} 个值）`,
    total: (n) => `合计（${n} 个值）`, value: '取值', days: '时间范围', empty: '该范围内没有反馈。',
    dimension_segment: '客群',
  },
  en: {
    group_by: 'Group by', filter: 'Filter', any: 'all', none: '(not given)',
    other: (n) => `other (${n} values)`, total: (n) => `total (${n} values)`, value: 'Value',
    days: 'Range', empty: 'No feedback in this range.', dimension_segment: 'segment',
  },
};

const word = (key, ...args) => {
  const value = (WORDS[currentLang()] ?? WORDS.zh)[key];
  return typeof value === 'function' ? value(...args) : value;
};

const COLUMNS = ['volume', 'mean_sentiment', 'negative_share', 'nps', 'csat', 'ces'];
const RANGES = [1, 7, 30];


const dimensionName = (name) => (name === 'segment' ? word('dimension_segment') : name);
const valueName = (value) => (value === '' ? word('none') : value);

function figure(name, value) {
  if (value === null || value === undefined) return '–';
  if (name === 'volume') return Math.round(value).toLocaleString();
  if (name === 'negative_share') return `${(100 * value).toFixed(1)}%`;
  return Number(value).toFixed(name === 'mean_sentiment' ? 2 : 1);
}

// The state of the bar lives in the URL's query after the route (#/segments?by=city&segment=VIP)
// so a view can be shared; only known dimensions are read back from it.
function readState(dimensions) {
  const query = new URLSearchParams(location.hash.split('?')[1] ?? '');
  const by = dimensions.includes(query.get('by')) ? query.get('by') : dimensions[0];
  const filters = new Map();
  for (const name of dimensions) if (query.has(name)) filters.set(name, query.get(name));
  const days = RANGES.includes(Number(query.get('days'))) ? Number(query.get('days')) : 7;
  return { by, filters, days };
}

function writeState(state) {
  const query = new URLSearchParams({ by: state.by, days: String(state.days) });
  for (const [name, value] of state.filters) query.set(name, value);
  history.replaceState(null, '', `#/segments?${query}`);
}

function apiQuery(state, exclude) {
  const query = new URLSearchParams();
  query.set('from', new Date(Date.now() - state.days * 86400e3).toISOString());
  for (const [name, value] of state.filters) {
    if (name === exclude) continue;
    if (name === 'segment') query.set('segment', value);
    else query.append('meta', `${name}=${value}`);
  }
  return query;
}

// Renders the view into `view`; `getJson` is the dashboard's fetch (it handles sign-out).
export function renderDimensions(view, getJson) {
  let alive = true;
  const bar = el('div', { class: 'controls dimension-bar', role: 'search' });
  const table = el('div', { class: 'scroll', id: 'dimension-figures' });
  view.append(bar, table);

  getJson('/v1/dimensions').then(async ({ dimensions }) => {
    if (!alive) return;
    const state = readState(dimensions);
    // Each picker offers the values of its dimension within the other filters.
    const pickers = await Promise.all(dimensions.map(async (name) => {
      const body = await getJson(`/v1/dimensions/${encodeURIComponent(name)}?${apiQuery(state, name)}`);
      const current = state.filters.get(name);
      const values = body.values.map((v) => v.value);
      if (current !== undefined && !values.includes(current)) values.unshift(current);
      return el('label', { class: 'control' }, `${dimensionName(name)} `,
        el('select', { 'data-dimension': name, onchange: (e) => {
          if (e.target.selectedIndex === 0) state.filters.delete(name);
          else state.filters.set(name, e.target.value);
          writeState(state);
          rerender();
        } }, el('option', {}, word('any')),
        values.map((v) => el('option', { value: v, selected: v === current }, valueName(v)))));
    }));
    if (!alive) return;
    const by = el('select', { id: 'dimension-by', onchange: (e) => {
      state.by = e.target.value;
      writeState(state);
      rerender();
    } }, dimensions.map((n) => el('option', { value: n, selected: n === state.by }, dimensionName(n))));
    const days = el('select', { id: 'dimension-days', onchange: (e) => {
      state.days = Number(e.target.value);
      writeState(state);
      rerender();
    } }, RANGES.map((d) => el('option', { value: d, selected: d === state.days }, `${d}d`)));
    bar.replaceChildren(el('label', { class: 'control' }, `${word('group_by')} `, by),
      el('label', { class: 'control' }, `${word('days')} `, days),
      el('span', { class: 'control' }, `${word('filter')}:`), ...pickers);
    const body = await getJson(`/v1/dimensions/${encodeURIComponent(state.by)}?${apiQuery(state)}`);
    if (!alive) return;
    table.replaceChildren(figuresTable(state.by, body));
  }).catch((error) => {
    if (alive) table.replaceChildren(el('p', { class: 'error' }, String(error.message)));
  });

  function rerender() {
    alive = false;
    view.replaceChildren();
    renderDimensions(view, getJson);
  }
  return () => { alive = false; };
}

function figuresTable(by, body) {
  if (!body.total.volume) return el('p', { class: 'empty' }, word('empty'));
  const row = (label, figures, cls) => el('tr', { class: cls },
    el('th', { scope: 'row' }, label), COLUMNS.map((c) => el('td', {}, figure(c, figures[c]))));
  return el('table', { class: 'grid dimension-table' },
    el('caption', {}, dimensionName(by)),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, word('value')),
      COLUMNS.map((c) => el('th', { scope: 'col' }, t(c))))),
    el('tbody', {},
      body.values.map((v) => row(valueName(v.value), v)),
      body.other ? row(word('other', body.other.folded_values), body.other, 'other') : null,
      row(word('total', body.total.distinct_values), body.total, 'total')));
}
