/** The result table: one row per metric with our number, the baseline from the same run, and the ratio. */

export interface Row {
  /** Section name, e.g. "generation". */
  section: string;
  metric: string;
  ours: string;
  baseline: string;
  /** ours / baseline (or as stated in the metric), already formatted; '' when not applicable. */
  ratio: string;
  aim: string;
  /** Whether the aim was met; undefined for informational rows. */
  met?: boolean;
  note?: string;
}

/** A row for a section that could not run, so the table says why instead of the run crashing. */
export function skippedRow(section: string, metric: string, reason: string): Row {
  return { section, metric, ours: 'skipped', baseline: '', ratio: '', aim: '', note: reason.split('\n')[0].slice(0, 300) };
}

export function ratio(value: number, digits = 2): string {
  return Number.isFinite(value) ? `${value.toFixed(digits)}×` : 'n/a';
}

const HEADERS = ['section', 'metric', 'ours', 'baseline', 'ratio', 'aim', 'met'];

function cells(row: Row): string[] {
  return [row.section, row.metric, row.ours, row.baseline, row.ratio, row.aim, row.met === undefined ? '' : row.met ? 'yes' : 'NO'];
}

/** Fixed-width text table for the terminal, notes listed underneath. */
export function textTable(rows: Row[]): string {
  const all = [HEADERS, ...rows.map(cells)];
  const widths = HEADERS.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  const out = [line(HEADERS), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => line(cells(r)))];
  const notes = rows.filter((r) => r.note !== undefined);
  if (notes.length > 0) out.push('', ...notes.map((r) => `* ${r.section} / ${r.metric}: ${r.note}`));
  return out.join('\n');
}

/** The same table as GitHub Markdown (for pasting into docs/benchmarks.md). */
export function markdownTable(rows: Row[]): string {
  const escape = (c: string): string => c.replace(/\|/g, '\\|');
  const out = [`| ${HEADERS.join(' | ')} |`, `|${HEADERS.map(() => '---').join('|')}|`];
  for (const row of rows) out.push(`| ${cells(row).map(escape).join(' | ')} |`);
  return out.join('\n');
}
