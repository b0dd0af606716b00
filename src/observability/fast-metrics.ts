import type { Registry } from 'prom-client';

// A counter and a histogram for the per-request metrics, cheaper than
// prom-client's on the hot path: prom-client hashes the label set on every
// inc/observe, even through a child from labels(). Here a child is made once
// per label set (the edge keeps one per route and status) and counting is a
// few array writes; the numbers are turned into Prometheus samples only when
// /metrics is scraped (the registry asks get()). Same names, labels and
// exposition as prom-client's Counter and Histogram.

type Labels = Readonly<Record<string, string | number>>;

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface Exposed {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: Sample[];
}

export class FastCounterChild {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class FastCounter {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly children = new Map<string, FastCounterChild>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The child of a label set (made once; keep it). */
  labels(labels: Labels): FastCounterChild {
    const key = this.labelNames.map((n) => String(labels[n] ?? '')).join('\u0000');
    let c = this.children.get(key);
    if (!c) this.children.set(key, (c = new FastCounterChild({ ...labels })));
    return c;
  }

  inc(labels: Labels, by = 1): void {
    this.labels(labels).inc(by);
  }

  async get(): Promise<Exposed> {
    return { name: this.name, help: this.help, type: 'counter', aggregator: 'sum', values: [...this.children.values()].map((c) => ({ value: c.value, labels: { ...c.labels } })) };
  }

  reset(): void {
    this.children.clear();
  }
}

export class FastHistogramChild {
  /** counts per bucket (not cumulative), the last slot for +Inf */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly upper: readonly number[],
  ) {
    this.counts = new Float64Array(upper.length + 1);
  }
  observe(v: number): void {
    const u = this.upper;
    let i = 0;
    while (i < u.length && v > u[i]!) i++;
    this.counts[i]! += 1;
    this.sum += v;
    this.count++;
  }
}

export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly children = new Map<string, FastHistogramChild>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly buckets: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  labels(labels: Labels): FastHistogramChild {
    const key = this.labelNames.map((n) => String(labels[n] ?? '')).join('\u0000');
    let c = this.children.get(key);
    if (!c) this.children.set(key, (c = new FastHistogramChild({ ...labels }, this.buckets)));
    return c;
  }

  observe(labels: Labels, v: number): void {
    this.labels(labels).observe(v);
  }

  async get(): Promise<Exposed> {
    const values: Sample[] = [];
    for (const c of this.children.values()) {
      let acc = 0;
      this.buckets.forEach((le, i) => {
        acc += c.counts[i]!;
        values.push({ value: acc, labels: { ...c.labels, le }, metricName: `${this.name}_bucket` });
      });
      values.push({ value: c.count, labels: { ...c.labels, le: '+Inf' }, metricName: `${this.name}_bucket` });
      values.push({ value: c.sum, labels: { ...c.labels }, metricName: `${this.name}_sum` });
      values.push({ value: c.count, labels: { ...c.labels }, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }

  reset(): void {
    this.children.clear();
  }
}
