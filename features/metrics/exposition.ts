/**
 * A small Prometheus exporter: counter and histogram families whose series are made once per label set,
 * their label text escaped then, and found again by the caller's own maps (no label set hashed or text
 * built per observation), rendered in the text exposition format 0.0.4.
 */

/** One counter series: its label text (rendered once, without braces) and its value. */
export type Sample = { readonly labels: string; value: number };

/** One histogram series: observations per bucket (not cumulative: summed when rendered), their sum and count. */
export type Observed = { readonly labels: string; readonly bounds: readonly number[]; readonly counts: number[]; sum: number; count: number };

/** Escapes a label value as the text format wants it: backslash, double quote and line feed. */
function escapeValue(value: string): string {
  return value.replace(/[\\"\n]/g, (ch) => (ch === "\n" ? "\\n" : `\\${ch}`));
}

/** `a="x",b="y"` for a label set, in the order given. */
function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([name, value]) => `${name}="${escapeValue(value)}"`)
    .join(",");
}

/** A number as the text format writes it: +Inf, -Inf, NaN, else JavaScript's shortest form. */
function formatValue(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return Number.isNaN(value) ? "NaN" : String(value);
}

/** The HELP and TYPE lines of a family (HELP escapes backslash and line feed). */
export function header(out: string[], name: string, help: string, type: "counter" | "gauge" | "histogram"): void {
  out.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${name} ${type}`);
}

/** One sample line: `name{labels} value`, or `name value` without labels. */
export function sampleLine(name: string, labels: string, value: number): string {
  return labels === "" ? `${name} ${formatValue(value)}` : `${name}{${labels}} ${formatValue(value)}`;
}

/** A counter family: its series in the order they were made. */
export class CounterFamily {
  private readonly series: Sample[] = [];
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }

  /** A new series with these labels; the caller keeps it and counts on it (`sample.value++`). */
  add(labels: Record<string, string>): Sample {
    const sample = { labels: labelText(labels), value: 0 };
    this.series.push(sample);
    return sample;
  }

  render(out: string[]): void {
    header(out, this.name, this.help, "counter");
    for (const s of this.series) out.push(sampleLine(this.name, s.labels, s.value));
  }
}

/** A histogram family over fixed bucket bounds (seconds, ascending). */
export class HistogramFamily {
  private readonly series: Observed[] = [];
  // The bounds as `le` label values, rendered once.
  private readonly le: string[];
  readonly name: string;
  readonly help: string;
  readonly bounds: readonly number[];
  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.bounds = bounds;
    this.le = [...bounds.map(formatValue), "+Inf"];
  }

  /** A new series with these labels; the caller keeps it and observes on it (observe). */
  add(labels: Record<string, string>): Observed {
    const observed = { labels: labelText(labels), bounds: this.bounds, counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
    this.series.push(observed);
    return observed;
  }

  render(out: string[]): void {
    header(out, this.name, this.help, "histogram");
    for (const s of this.series) {
      const sep = s.labels === "" ? "" : ",";
      let cumulative = 0;
      for (let i = 0; i < s.counts.length; i++) {
        cumulative += s.counts[i];
        out.push(`${this.name}_bucket{${s.labels}${sep}le="${this.le[i]}"} ${cumulative}`);
      }
      out.push(sampleLine(`${this.name}_sum`, s.labels, s.sum), sampleLine(`${this.name}_count`, s.labels, s.count));
    }
  }
}

/** Records one observation: a scan of the (dozen) bounds, one bucket, the sum and the count. */
export function observe(h: Observed, value: number): void {
  let i = 0;
  while (i < h.bounds.length && value > h.bounds[i]) i++;
  h.counts[i]++;
  h.sum += value;
  h.count++;
}

/**
 * A counter family over two labels, each series found by two map lookups. The caller bounds the values:
 * it folds a value outside a known set into one before counting.
 */
export class Counter2 {
  private readonly family: CounterFamily;
  private readonly byFirst = new Map<string, Map<string, Sample>>();
  private readonly names: readonly [string, string];
  constructor(name: string, help: string, names: readonly [string, string]) {
    this.family = new CounterFamily(name, help);
    this.names = names;
  }

  inc(first: string, second: string): void {
    let bySecond = this.byFirst.get(first);
    if (!bySecond) {
      bySecond = new Map();
      this.byFirst.set(first, bySecond);
    }
    let sample = bySecond.get(second);
    if (!sample) {
      sample = this.family.add({ [this.names[0]]: first, [this.names[1]]: second });
      bySecond.set(second, sample);
    }
    sample.value++;
  }

  render(out: string[]): void {
    this.family.render(out);
  }
}
