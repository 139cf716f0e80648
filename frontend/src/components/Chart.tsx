'use client';
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  /** A CSS colour (custom properties are resolved from the page). */
  color: string;
  values: (number | null)[];
}

/** A CSS colour (`var(--ok)`, `light-dark(…)`) as the page computes it now, for the canvas. */
function resolve(color: string): string {
  const probe = document.createElement('span');
  probe.style.color = color;
  document.body.appendChild(probe);
  const computed = getComputedStyle(probe).color;
  probe.remove();
  return computed || color;
}

/** A small time-series chart (uPlot) of `series` over `times` (seconds since the epoch). */
export function Chart({
  title,
  times,
  series,
  unit,
  testId,
}: {
  title: string;
  times: number[];
  series: Series[];
  unit: string;
  testId: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data: uPlot.AlignedData = [times, ...series.map((s) => s.values)];

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const axis = { stroke: resolve('var(--muted)'), grid: { stroke: resolve('var(--line)') } };
    const u = new uPlot(
      {
        width: Math.max(el.clientWidth, 240),
        height: 180,
        series: [
          {},
          ...series.map((s) => ({
            label: s.label,
            stroke: resolve(s.color),
            width: 1.5,
            spanGaps: true,
            // A lone value (one busy minute) still shows.
            points: { show: true, size: 4 },
          })),
        ],
        axes: [axis, { ...axis, label: unit, size: 56 }],
        legend: { show: true },
      },
      data,
      el,
    );
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(el.clientWidth, 240), height: 180 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
    // The chart is made once per set of series; new data goes in below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [series.map((s) => s.label).join('|'), unit]);

  useEffect(() => {
    plot.current?.setData(data);
  });

  const total = series.reduce((sum, s) => sum + s.values.reduce<number>((a, v) => a + (v ?? 0), 0), 0);
  return (
    <figure className="chart" data-testid={testId} data-total={total}>
      <figcaption>{title}</figcaption>
      <div ref={box} />
    </figure>
  );
}
