// Effort beside CES (issue 19, docs/metrics.md "Effort read from text"): the CES rating
// customers gave, and what their words say it took (effort_flag_rate: share of comments with
// an effort cue such as 跑了好几趟 or 打了三次电话; text_effort: the mean effort score), with a
// link to the comments behind the figure, their cues highlighted. Labels of the figures come
// from the metric catalogue (GET /v1/metrics); every value goes in as a text node.

import { currentLang, t } from './i18n.js';
import { el } from './dom.js';
import { drillLink } from './drill.js';

const WORDS = {
  zh: { title: '客户费力度', comments: '查看费力反馈', no_ces: '无评分' },
  en: { title: 'Customer effort', comments: 'Comments showing effort', no_ces: 'no ratings' },
};

const word = (key) => (WORDS[currentLang()] ?? WORDS.zh)[key] ?? key;

const pct = (v) => (v === null || v === undefined ? '–' : `${(100 * v).toFixed(0)}%`);
const num = (v, digits = 2) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits));

// The [label, value] pairs a touchpoint tile shows: CES when rated, then the effort flag rate.
export function effortFigures(summary) {
  const figures = [];
  if (summary.ces !== null && summary.ces !== undefined) figures.push([t('ces'), num(summary.ces, 1)]);
  if (summary.effort_flag_rate !== undefined) figures.push([t('effort_flag_rate'), pct(summary.effort_flag_rate)]);
  return figures;
}

// The touchpoint page's effort panel: CES, effort flag rate and text effort side by side, and
// the click-through to the effort-flagged comments of the touchpoint.
export function effortPanel(touchpoint, summary) {
  const figures = [
    ['ces', summary.ces === null || summary.ces === undefined ? word('no_ces') : num(summary.ces, 1)],
    ['effort_flag_rate', pct(summary.effort_flag_rate)],
    ['text_effort', num(summary.text_effort)],
  ];
  return el('section', { id: 'effort', class: 'effort' },
    el('h3', {}, word('title')),
    el('dl', { class: 'effort-figures' }, figures.map(([name, value]) => el('div', { 'data-metric': name },
      el('dt', {}, t(name)), el('dd', {}, value)))),
    drillLink({ touchpoint, effort: 'true' }, word('comments'), 'drill drill-effort'));
}
