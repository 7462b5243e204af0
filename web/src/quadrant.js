// Importance x performance quadrant of a touchpoint's key experiences (GET /v1/drivers:
// each topic's importance and experience, 0-10, and the quadrant the API placed it in, divided
// at the means it reports as quadrant_cuts). A click on or near a topic opens its comments.

import * as echarts from 'echarts/core';
import { ScatterChart } from 'echarts/charts';
import { MarkAreaComponent, MarkLineComponent } from 'echarts/components';

import { currentLang } from './i18n.js';
import { openDrill } from './drill.js';

echarts.use([ScatterChart, MarkAreaComponent, MarkLineComponent]);

const WORDS = {
  zh: { title: '重要度 × 表现', importance: '重要度', performance: '表现（体验 0-10）',
    concentrate: '重点改进', keep_up: '继续保持', low_priority: '低优先级', overkill: '可能过度投入' },
  en: { title: 'Importance × performance', importance: 'Importance', performance: 'Performance (experience 0-10)',
    concentrate: 'Concentrate here', keep_up: 'Keep up', low_priority: 'Low priority', overkill: 'Possible overkill' },
};
const word = (key) => (WORDS[currentLang()] ?? WORDS.zh)[key] ?? key;
export const quadrantTitle = () => word('title');

const COLOURS = { concentrate: '#d73027', keep_up: '#1a9850', low_priority: '#9aa5b1', overkill: '#f59e0b' };
// Fixed axes (both scales are 0-10), so a point's place means the same on every page.
export const QUADRANT_GRID = { left: 50, right: 20, top: 20, bottom: 45 };
const HIT_PX = 24;

// Draws ``drivers`` (one touchpoint of /v1/drivers) into ``instance``; ``filter`` is what a
// click adds to the topic (touchpoint and the drivers' range). ``esc`` escapes tooltip text.
export function drawQuadrant(instance, box, drivers, { topicName, filter, esc }) {
  const items = (drivers?.key_experiences ?? []).filter((k) => k.quadrant);
  const cuts = drivers?.quadrant_cuts;
  box.dataset.points = String(items.length);
  const area = (name, from, to) => [{ name: word(name), coord: from,
    itemStyle: { color: COLOURS[name], opacity: 0.06 }, label: { color: COLOURS[name] } }, { coord: to }];
  instance.setOption({
    animation: false,
    grid: QUADRANT_GRID,
    tooltip: { formatter: (p) => (p.data?.topic ? `${esc(topicName(p.data.topic))}<br>${esc(word(p.data.quadrant))}`
      + `<br>${esc(word('importance'))} ${esc(p.value[1].toFixed(1))} · ${esc(word('performance'))} ${esc(p.value[0].toFixed(1))}` : '') },
    xAxis: { type: 'value', min: 0, max: 10, name: word('performance'), nameLocation: 'middle', nameGap: 25 },
    yAxis: { type: 'value', min: 0, max: 10, name: word('importance'), nameLocation: 'middle', nameGap: 30 },
    series: [{
      type: 'scatter', symbolSize: 14,
      data: items.map((k) => ({ name: topicName(k.topic), value: [k.experience, k.importance], topic: k.topic,
        quadrant: k.quadrant, itemStyle: { color: COLOURS[k.quadrant] } })),
      label: { show: true, position: 'right', formatter: '{b}' },
      markLine: cuts ? { silent: true, symbol: 'none', lineStyle: { type: 'dashed', color: '#888' }, label: { show: false },
        data: [{ xAxis: cuts.performance }, { yAxis: cuts.importance }] } : undefined,
      markArea: cuts ? { silent: true, label: { position: 'insideTop', fontSize: 11 }, data: [
        area('concentrate', [0, 10], [cuts.performance, cuts.importance]),
        area('keep_up', [cuts.performance, 10], [10, cuts.importance]),
        area('low_priority', [0, cuts.importance], [cuts.performance, 0]),
        area('overkill', [cuts.performance, cuts.importance], [10, 0]),
      ] } : undefined,
    }],
  }, true);
  // The nearest topic within a finger's width of the click (a point is 14 px across).
  instance.getZr().off('click');
  instance.getZr().on('click', (e) => {
    let best = null;
    for (const k of items) {
      const [x, y] = instance.convertToPixel({ gridIndex: 0 }, [k.experience, k.importance]);
      const distance = Math.hypot(x - e.offsetX, y - e.offsetY);
      if (distance <= HIT_PX && (!best || distance < best.distance)) best = { k, distance };
    }
    if (best) openDrill({ ...filter, topic: best.k.topic });
  });
}
