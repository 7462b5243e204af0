// Click-through: every figure on the dashboard (an alert, a journey cell, a topic bar, a
// driver row, a trend point) opens the comments behind it, as a filtered page of
// GET /v1/feedback with each comment's evidence highlighted on the text the spans index.
// The filter lives in the URL hash (#/feedback/<query>), so a drill-down can be linked and the
// browser's back button returns to the figure. Comments are customer input: every value goes
// in as a text node.

import { currentLang, formatTime } from './i18n.js';
import { el } from './dom.js';
import { customerLink } from './customer.js';

// The /v1/feedback filters a drill-down may carry, in the order they are shown.
const FILTERS = ['touchpoint', 'topic', 'channel', 'stage', 'sentiment', 'intent', 'effort',
  'event_id', 'from', 'to'];
const PAGE_SIZE = 50;

const WORDS = {
  zh: {
    title: '反馈明细', back: '返回', more: '加载更多', none: '没有符合条件的反馈',
    total: (n) => `共 ${n} 条`, touchpoint: '触点', topic: '话题', channel: '渠道', stage: '阶段',
    sentiment: '情感', intent: '意图', event_id: '事件', from: '从', to: '到',
    comments: '查看评论', window_comments: '窗口内反馈',
    negative: '负面', neutral: '中性', positive: '正面', complaint: '投诉', inquiry: '咨询',
    praise: '表扬', suggestion: '建议', other: '其他', unknown: '未标注',
    effort: '费力', true: '是', false: '否',
  },
  en: {
    title: 'Feedback', back: 'Back', more: 'Load more', none: 'No feedback matches',
    total: (n) => `${n} in all`, touchpoint: 'Touchpoint', topic: 'Topic', channel: 'Channel',
    stage: 'Stage', sentiment: 'Sentiment', intent: 'Intent', event_id: 'Events', from: 'From',
    to: 'To', comments: 'Quoted comments', window_comments: 'Feedback in the window',
    negative: 'negative', neutral: 'neutral', positive: 'positive', complaint: 'complaint',
    inquiry: 'inquiry', praise: 'praise', suggestion: 'suggestion', other: 'other',
    unknown: 'unlabelled', effort: 'Effort', true: 'yes', false: 'no',
  },
};

const word = (key, ...args) => {
  const value = (WORDS[currentLang()] ?? WORDS.zh)[key];
  return typeof value === 'function' ? value(...args) : value ?? key;
};


const iso = (value) => (value instanceof Date ? value.toISOString() : String(value));

// What a metric's figure counts, as a feedback filter: a negative share is made of the
// negative comments, a complaint rate of the complaints; other figures rest on all comments.
export function metricFilter(metric) {
  if (metric === 'negative_share' || metric === 'negative_count') return { sentiment: 'negative' };
  if (metric === 'complaint_rate' || metric === 'complaint_count') return { intent: 'complaint' };
  if (['effort_flag_rate', 'effort_count', 'text_effort'].includes(metric)) return { effort: 'true' };
  return {};
}

// The hash that opens the comments matching ``filter`` (keys of FILTERS; event_id a list;
// from/to Dates or RFC 3339 strings). Empty values are left out.
export function drillHash(filter) {
  const params = new URLSearchParams();
  for (const key of FILTERS) {
    const value = filter[key];
    if (value === null || value === undefined || value === '') continue;
    for (const one of Array.isArray(value) ? value : [value]) if (one) params.append(key, iso(one));
  }
  return `#/feedback/${encodeURIComponent(params.toString())}`;
}

export function openDrill(filter) {
  location.hash = drillHash(filter);
}

// A link that opens the comments matching ``filter``.
export function drillLink(filter, label, className = 'drill') {
  return el('a', { href: drillHash(filter), class: className }, label);
}

// An alert's two ways in: the comments its explanation quotes, and all feedback of its subject
// (touchpoint, and the rule's channel, stage and topic when it names one) in its window.
export function alertLinks(alert) {
  const one = (value) => (value && !String(value).includes(',') ? value : null);
  const quoted = (alert.explanation?.comments ?? []).map((c) => c.event_id).filter(Boolean);
  const subject = {
    touchpoint: alert.touchpoint, channel: one(alert.channel), stage: one(alert.stage),
    topic: one(alert.topic), from: alert.window_start, to: alert.window_end,
    ...metricFilter(alert.metric),
  };
  return el('span', { class: 'drill-links' },
    quoted.length ? drillLink({ touchpoint: alert.touchpoint, event_id: quoted,
      from: alert.window_start, to: alert.window_end }, word('comments'), 'drill drill-quoted')
      : null,
    quoted.length ? ' · ' : null,
    drillLink(subject, word('window_comments'), 'drill drill-window'));
}

// The text with the evidence spans of ``topics`` as <mark>s. Offsets count Unicode code
// points into the text they index, so the text is split into code points; spans out of range
// or overlapping an earlier one are left unmarked.
export function marked(text, topics) {
  const points = Array.from(String(text ?? ''));
  const spans = [];
  for (const topic of topics) {
    for (const span of topic.evidence ?? []) {
      const [start, end] = Array.isArray(span) ? span : [];
      if (Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start < end
        && end <= points.length) spans.push({ start, end, topic });
    }
  }
  spans.sort((a, b) => a.start - b.start);
  const out = [];
  let at = 0;
  for (const { start, end, topic } of spans) {
    if (start < at) continue;
    if (start > at) out.push(points.slice(at, start).join(''));
    const score = Number(topic.sentiment);
    const label = score <= -0.2 ? 'negative' : score >= 0.2 ? 'positive' : 'neutral';
    out.push(el('mark', { class: `ev-${label}`, 'data-topic': topic.id, title: topic.name ?? topic.id },
      points.slice(start, end).join('')));
    at = end;
  }
  if (at < points.length) out.push(points.slice(at).join(''));
  return out;
}

// A comment's effort cues as spans marked() highlights (as negative evidence).
function effortSpans(item) {
  return (item.effort?.cues ?? []).map((cue) => ({
    id: `effort:${cue.kind}`, name: cue.term, evidence: cue.evidence, sentiment: -1,
  }));
}

function parse(arg) {
  const params = new URLSearchParams(arg ?? '');
  const filter = {};
  for (const key of FILTERS) {
    const values = params.getAll(key).filter(Boolean);
    if (!values.length) continue;
    filter[key] = key === 'event_id' ? values : values[0];
  }
  return filter;
}

function shown(key, value, topicName) {
  if (key === 'topic') return topicName(value);
  if (key === 'from' || key === 'to') return formatTime(value);
  if (key === 'event_id') return value.join(', ');
  if (['sentiment', 'intent', 'effort'].includes(key) || value === 'unknown') return word(value);
  return value;
}

// The comment list for the filter in ``arg`` (the hash's query): what it is filtered by, the
// number of matches, and pages of comments newest first. ``getJson`` is the page's fetch (it
// handles sign-out); ``topicName`` maps topic ids to display names.
export function renderFeedback(view, arg, { getJson, topicName }) {
  const filter = parse(arg);
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filter)) {
    for (const one of Array.isArray(value) ? value : [value]) query.append(key, one);
  }
  const summary = el('dl', { id: 'drill-filter', class: 'drill-filter' },
    Object.entries(filter).map(([key, value]) => el('div', { 'data-filter': key,
      'data-value': Array.isArray(value) ? value.join(',') : value },
    el('dt', {}, word(key)), el('dd', {}, shown(key, value, topicName)))));
  const count = el('p', { id: 'drill-total', class: 'muted', role: 'status' });
  const list = el('ul', { id: 'drill-list', class: 'verbatims' });
  const more = el('button', { type: 'button', id: 'drill-more', hidden: true });
  view.append(el('h2', { class: 'section' }, word('title'), ' ',
    el('a', { href: '#', class: 'drill-back', onclick: (e) => { e.preventDefault(); history.back(); } },
      `← ${word('back')}`)), summary, count, list, more);
  let page = 0;
  let stopped = false;

  async function load() {
    page += 1;
    more.hidden = true;
    let body;
    try {
      body = await getJson(`/v1/feedback?${query.toString()}&page=${page}&page_size=${PAGE_SIZE}`);
    } catch (error) {
      if (!stopped) count.textContent = `/v1/feedback: ${error.message}`;
      return;
    }
    if (stopped) return;
    count.textContent = word('total', body.total);
    list.dataset.loaded = String((page - 1) * PAGE_SIZE + body.items.length);
    if (!body.items.length && page === 1) list.append(el('li', { class: 'muted' }, word('none')));
    for (const item of body.items) {
      // With the effort filter, the effort cues' spans; with a topic filter, that topic's
      // evidence; otherwise every topic's.
      const topics = filter.effort === 'true' ? effortSpans(item)
        : filter.topic ? item.topics.filter((x) => x.id === filter.topic) : item.topics;
      list.append(el('li', { class: `verbatim s-${item.sentiment.label}`, 'data-event-id': item.event_id },
        el('p', { class: 'text' }, marked(item[item.spans_index] ?? item.text, topics)),
        el('p', { class: 'meta' }, formatTime(item.occurred_at), ' · ', item.touchpoint, ' · ',
          item.channel, item.stage ? ` · ${item.stage}` : '', ' · ', word(item.sentiment.label),
          ' · ', word(item.intent),
          item.topics.length ? ` · ${item.topics.map((x) => topicName(x.id)).join('、')}` : '',
          item.customer_id ? [' · ', customerLink(item.customer_id, item.customer_id)] : null)));
    }
    more.textContent = word('more');
    more.hidden = page * PAGE_SIZE >= body.total;
  }
  more.addEventListener('click', load);
  load();
  return () => { stopped = true; };
}
