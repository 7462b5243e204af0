// The explanation of a figure alert (alert.v3 `explanation`, docs/alerting.md "Explanations"):
// the topics that moved the metric, where the breach is, the over-represented keywords and
// example comments with their evidence highlighted. Everything shown comes from customer data
// or names a producer chose, so every value goes in as a text node; nothing uses innerHTML.

import { currentLang } from './i18n.js';
import { el } from './dom.js';

const WORDS = {
  zh: {
    why: '为什么触发', topic: '话题', share: '占比', baseline: '基线占比', lift: '提升',
    sentiment: '话题情感', contribution: '贡献', breach: '集中在', channel: '渠道', stage: '阶段',
    metric: '指标', terms: '突增词', examples: '例句', none: '无', new: '新',
    unknown_stage: '未标注',
  },
  en: {
    why: 'Why it fired', topic: 'Topic', share: 'Share', baseline: 'Baseline share', lift: 'Lift',
    sentiment: 'Topic sentiment', contribution: 'Contribution', breach: 'Breach in',
    channel: 'channel', stage: 'stage', metric: 'Metric', terms: 'Rising words',
    examples: 'Examples', none: 'none', new: 'new', unknown_stage: 'unlabelled',
  },
};

const word = (key) => (WORDS[currentLang()] ?? WORDS.zh)[key];


const number = (v, digits = 3) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits));
const percent = (v) => (v === null || v === undefined ? '–' : `${(100 * Number(v)).toFixed(0)}%`);
const signed = (v) => (v === null || v === undefined ? '–'
  : `${Number(v) >= 0 ? '+' : ''}${Number(v).toFixed(3)}`);

// The comment with its evidence spans as <mark>s. Offsets count Unicode code points (as the
// pipeline does), so the text is split into code points first; spans out of range are ignored.
export function highlighted(text, spans) {
  const points = Array.from(String(text ?? ''));
  const ordered = (Array.isArray(spans) ? spans : [])
    .filter((s) => Array.isArray(s) && Number.isInteger(s[0]) && Number.isInteger(s[1])
      && s[0] >= 0 && s[0] < s[1] && s[1] <= points.length)
    .sort((a, b) => a[0] - b[0]);
  const out = [];
  let at = 0;
  for (const [start, end] of ordered) {
    if (start < at) continue;
    if (start > at) out.push(points.slice(at, start).join(''));
    out.push(el('mark', { class: 'ev-negative' }, points.slice(start, end).join('')));
    at = end;
  }
  if (at < points.length) out.push(points.slice(at).join(''));
  return out;
}

function topicsTable(topics, nameOf) {
  const head = ['topic', 'share', 'baseline', 'lift', 'sentiment', 'contribution']
    .map((key) => el('th', { scope: 'col' }, word(key)));
  return el('table', { class: 'grid explain-topics' },
    el('thead', {}, el('tr', {}, head)),
    el('tbody', {}, topics.map((topic) => el('tr', { 'data-topic': topic.topic },
      el('td', { title: topic.topic }, nameOf(topic.topic)), el('td', {}, percent(topic.share)),
      el('td', {}, percent(topic.baseline_share)),
      el('td', {}, topic.lift === null ? word('new') : `×${number(topic.lift, 1)}`),
      el('td', {}, number(topic.sentiment, 2)), el('td', {}, signed(topic.contribution))))));
}

function breachLine(explanation) {
  const parts = [];
  if (explanation.breaching_channel) {
    parts.push(`${word('channel')} ${explanation.breaching_channel}`);
  }
  if (explanation.breaching_stage !== null && explanation.breaching_stage !== undefined) {
    parts.push(`${word('stage')} ${explanation.breaching_stage || word('unknown_stage')}`);
  }
  return el('p', { class: 'explain-breach' },
    `${word('breach')}: ${parts.length ? parts.join(' · ') : word('none')} · `,
    `${word('metric')} ${explanation.metric} ${number(explanation.baseline_value)} → `,
    `${number(explanation.value)} (${explanation.baseline_volume} → ${explanation.volume})`);
}

// The panel for one alert row, or null when the alert has no explanation (event alerts,
// alerts written before alert.v3). ``nameOf`` maps a topic id to its display name.
export function explainPanel(explanation, nameOf = (id) => id) {
  if (!explanation || typeof explanation !== 'object') return null;
  const topics = Array.isArray(explanation.topics) ? explanation.topics : [];
  const terms = Array.isArray(explanation.terms) ? explanation.terms : [];
  const comments = Array.isArray(explanation.comments) ? explanation.comments : [];
  return el('details', { class: 'explain' },
    el('summary', {}, word('why')),
    breachLine(explanation),
    topics.length ? topicsTable(topics, nameOf) : null,
    terms.length ? el('p', { class: 'explain-terms' }, `${word('terms')}: `,
      terms.map((term) => `${term.term} ×${number(term.lift, 1)}`).join(', ')) : null,
    comments.length ? el('ul', { class: 'explain-comments', 'aria-label': word('examples') },
      comments.map((comment) => el('li', { 'data-event-id': comment.event_id },
        el('span', { class: 'verbatim-text' }, highlighted(comment.text, comment.evidence)),
        el('small', { class: 'muted' }, ` · ${comment.channel} · ${comment.event_id}`)))) : null);
}
