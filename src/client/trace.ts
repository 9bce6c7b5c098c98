/**
 * Phase markers for measuring a restore: with `CACHEW_TRACE=1` in the environment, each `mark` prints
 * `cachew-trace <epoch ms> <name>` on stderr (the extraction thread's too, on the same clock). Off by
 * default: one boolean test per mark. docs/restore.md, "Where the time goes", lists the markers.
 */
const tracing = process.env.CACHEW_TRACE === '1';

export function mark(name: string): void {
  if (tracing) process.stderr.write(`cachew-trace ${(performance.timeOrigin + performance.now()).toFixed(1)} ${name}\n`);
}
