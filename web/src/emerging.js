// The 新话题 (emerging topics) view: phrases no taxonomy topic names, rising in the newest
// window (GET /v1/emerging, docs/emerging.md), over all the caller's touchpoints and per
// touchpoint. Each phrase opens its comments (GET /v1/feedback with the phrase's text and the
// window); operators may turn it into a topic or keywords of one, after a preview of how many
// stored comments it would tag (GET /v1/taxonomy/preview, POST /v1/taxonomy/changes).
// Phrases and comments are customer words: every value goes in as a text node.

import { currentLang } from './i18n.js';
import { el } from './dom.js';

const WORDS = {
  zh: {
    title: '新话题', intro: '分类尚未覆盖、在最近窗口内显著上升的说法', window: '窗口',
    baseline: '基线自', overall: '全部触点', phrase: '说法', mentions: '提及', customers: '客户数',
    share: '占比', before: '基线占比', lift: '提升', llr: 'G²', new: '新出现', none: '暂无上升的说法',
    comments: '相关反馈', loading: '加载中…', failed: '加载失败', add: '加入分类',
    topic: '话题 id（已有或新建）', topic_name: '新话题名称', preview: '预览',
    would_tag: (n, m) => `过去 30 天将标注 ${n} 条反馈（其中 ${m} 条已属该话题）`,
    confirm: '确认加入', done: (c) => `已由 ${c.principal} 加入 ${c.topic}：${c.keywords.join('、')}`,
    clusters: '未归类的负面反馈', clusters_intro: '没有话题标签的负面反馈，按字符 n-gram 相似度聚类',
    size: '条', trend: '趋势', open: '查看反馈', no_clusters: '暂无聚类',
  },
  en: {
    title: 'Emerging topics', intro: 'Phrases no topic names yet, rising in the newest window',
    window: 'Window', baseline: 'baseline from', overall: 'All touchpoints', phrase: 'Phrase',
    mentions: 'Mentions', customers: 'Customers', share: 'Share', before: 'Baseline share',
    lift: 'Lift', llr: 'G²', new: 'new', none: 'No rising phrases', comments: 'Comments',
    loading: 'Loading…', failed: 'Could not load', add: 'Add to taxonomy',
    topic: 'Topic id (existing or new)', topic_name: 'New topic name', preview: 'Preview',
    would_tag: (n, m) => `Would tag ${n} comments of the last 30 days (${m} already in the topic)`,
    confirm: 'Add', done: (c) => `${c.principal} added ${c.keywords.join(', ')} to ${c.topic}`,
    clusters: 'Untagged negative feedback', clusters_intro: 'Negative feedback no topic tags, grouped by character n-gram similarity',
    size: 'comments', trend: 'Trend', open: 'Show comments', no_clusters: 'No clusters',
  },
};

const word = (key) => (WORDS[currentLang()] ?? WORDS.zh)[key];


const percent = (v) => `${(100 * Number(v ?? 0)).toFixed(1)}%`;

async function showComments(getJson, box, answer, touchpoint, phrase) {
  box.replaceChildren(el('p', { class: 'muted' }, word('loading')));
  const params = new URLSearchParams({
    q: phrase.text, from: answer.window_start, to: answer.window_end, page_size: '20',
  });
  if (touchpoint) params.set('touchpoint', touchpoint);
  try {
    const page = await getJson(`/v1/feedback?${params}`);
    box.replaceChildren(
      el('h3', {}, `${word('comments')}: ${phrase.text} (${page.total})`),
      el('ul', { class: 'verbatims', id: 'emerging-comments' }, page.items.map((item) => el(
        'li', { class: `verbatim s-${item.sentiment?.label ?? 'neutral'}`, 'data-event-id': item.event_id },
        el('p', { class: 'text' }, item.text),
        el('small', { class: 'muted' }, `${item.touchpoint} · ${item.channel} · ${item.occurred_at}`)))));
  } catch {
    box.replaceChildren(el('p', { class: 'muted' }, word('failed')));
  }
}

// The form turning ``phrase`` into a topic or keywords of one, shown in ``box``.
function taxonomyForm(api, box, phrase) {
  const topic = el('input', { id: 'taxonomy-topic', required: true, pattern: '[a-z0-9_]+' });
  const name = el('input', { id: 'taxonomy-name' });
  const note = el('p', { id: 'taxonomy-note', class: 'muted', 'aria-live': 'polite' });
  const preview = async () => {
    const params = new URLSearchParams({ topic: topic.value, keywords: phrase.text });
    try {
      const found = await api.getJson(`/v1/taxonomy/preview?${params}`);
      note.textContent = word('would_tag')(found.matches, found.already_tagged);
    } catch {
      note.textContent = word('failed');
    }
  };
  const submit = async (event) => {
    event.preventDefault();
    const response = await fetch('/v1/taxonomy/changes', {
      method: 'POST',
      headers: { ...api.headers, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({
        topic: topic.value, name: name.value || null, keywords: [phrase.text], phrase: phrase.phrase,
      }),
    });
    const answer = await response.json().catch(() => ({}));
    note.textContent = response.ok ? word('done')(answer)
      : `${word('failed')}: ${typeof answer.detail === 'string' ? answer.detail : response.status}`;
    note.dataset.state = response.ok ? 'done' : 'failed';
  };
  box.replaceChildren(el('form', { id: 'taxonomy-form', class: 'card', onsubmit: submit },
    el('h3', {}, `${word('add')}: ${phrase.text}`),
    el('label', {}, word('topic'), ' ', topic), ' ',
    el('label', {}, word('topic_name'), ' ', name), ' ',
    el('button', { type: 'button', id: 'taxonomy-preview', onclick: preview }, word('preview')), ' ',
    el('button', { type: 'submit', id: 'taxonomy-confirm' }, word('confirm')),
    note));
}

function commentList(items) {
  return el('ul', { class: 'verbatims' }, items.map((item) => el(
    'li', { class: 'verbatim s-negative', 'data-event-id': item.event_id },
    el('p', { class: 'text' }, item.text),
    el('small', { class: 'muted' }, `${item.touchpoint} · ${item.occurred_at}`))));
}

function clusterCards(api, box, answer) {
  if (!answer.clusters.length) return [el('p', { class: 'muted' }, word('no_clusters'))];
  return answer.clusters.map((found, index) => el('section', {
    class: 'card emerging-cluster', 'data-size': found.size,
  },
  el('h4', {}, `${found.phrases.join(' · ') || '–'} · ${found.size} ${word('size')}`),
  el('p', { class: 'muted trend' }, `${word('trend')}: ${found.trend.join(' → ')}`),
  commentList(found.representative),
  el('button', {
    type: 'button', class: 'open-cluster', 'data-index': index,
    onclick: () => box.replaceChildren(
      el('h3', {}, `${word('comments')}: ${found.phrases.join(' · ')} (${found.size})`),
      el('div', { id: 'cluster-comments' }, commentList(found.comments))),
  }, word('open')),
  api.mayAct() && found.phrases.length ? el('button', {
    type: 'button', class: 'add-topic',
    onclick: () => taxonomyForm(api, box, { text: found.phrases[0], phrase: found.phrases[0] }),
  }, word('add')) : null));
}

function phraseTable(api, box, answer, group) {
  const { getJson } = api;
  if (!group.phrases.length) return el('p', { class: 'muted' }, word('none'));
  const head = ['phrase', 'mentions', 'customers', 'share', 'before', 'lift', 'llr']
    .map((key) => el('th', { scope: 'col' }, word(key)));
  return el('table', { class: 'grid emerging-phrases' },
    el('thead', {}, el('tr', {}, head)),
    el('tbody', {}, group.phrases.map((phrase) => el('tr', { 'data-phrase': phrase.phrase },
      el('td', {}, el('button', {
        type: 'button', class: 'link phrase',
        onclick: () => showComments(getJson, box, answer, group.touchpoint, phrase),
      }, phrase.text), phrase.new ? el('small', { class: 'badge' }, ` ${word('new')}`) : null,
      api.mayAct() ? el('button', {
        type: 'button', class: 'add-topic', onclick: () => taxonomyForm(api, box, phrase),
      }, word('add')) : null),
      el('td', {}, phrase.mentions), el('td', {}, phrase.customers),
      el('td', {}, percent(phrase.share)), el('td', {}, percent(phrase.baseline_share)),
      el('td', {}, `×${Number(phrase.lift).toFixed(1)}`),
      el('td', {}, Number(phrase.llr).toFixed(1))))));
}

// Renders the view into ``view``; ``end`` (an ISO instant from the route, #/emerging/<end>)
// picks the window, default now. ``api`` has the dashboard's authenticated ``getJson``,
// ``mayAct()`` (the signed-in principal is an operator) and the ``headers`` a POST needs.
export function renderEmerging(view, end, api) {
  const { getJson } = api;
  const comments = el('section', { id: 'emerging-detail', 'aria-live': 'polite' });
  const body = el('div', { id: 'emerging-body' }, el('p', { class: 'muted' }, word('loading')));
  view.append(el('h2', {}, word('title')), el('p', { class: 'muted' }, word('intro')), body,
    comments);
  const query = end ? `?${new URLSearchParams({ end })}` : '';
  let live = true;
  getJson(`/v1/emerging${query}`).then((answer) => {
    if (!live) return;
    const groups = [
      ...(answer.overall ? [{ ...answer.overall, label: word('overall') }] : []),
      ...answer.touchpoints.map((group) => ({ ...group, label: group.touchpoint })),
    ];
    body.replaceChildren(
      el('p', { id: 'emerging-window', class: 'muted' },
        `${word('window')} ${answer.window_start} – ${answer.window_end} · `
        + `${word('baseline')} ${answer.baseline_start}`),
      ...groups.map((group) => el('section', {
        class: 'card emerging-group', 'data-touchpoint': group.touchpoint,
      }, el('h3', {}, `${group.label} · ${group.volume}`),
      phraseTable(api, comments, answer, group))));
  }).catch(() => {
    if (live) body.replaceChildren(el('p', { class: 'muted' }, word('failed')));
  });
  const grouped = el('div', { id: 'emerging-clusters' }, el('p', { class: 'muted' }, word('loading')));
  body.after(el('h2', {}, word('clusters')), el('p', { class: 'muted' }, word('clusters_intro')),
    grouped);
  getJson(`/v1/emerging/clusters${query}`).then((answer) => {
    if (live) grouped.replaceChildren(...clusterCards(api, comments, answer));
  }).catch(() => {
    if (live) grouped.replaceChildren(el('p', { class: 'muted' }, word('failed')));
  });
  return () => { live = false; };
}
