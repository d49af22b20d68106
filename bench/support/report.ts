import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** One line of progress on stderr: stdout carries only the table. */
export function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'results');

/** What a reader needs to judge a figure: when, where, on which code, under how much other load. */
export interface RunMeta {
  date: string;
  node: string;
  cpus: number;
  cpuModel: string;
  commit: string;
  /** Uncommitted changes in src/ when the bench ran (other engineers' work in progress). */
  srcDirty: boolean;
  /** `uptime` load averages (1, 5, 15 min) at the start and at the end. */
  loadStart: number[];
  loadEnd?: number[];
}

export function runMeta(): RunMeta {
  const git = (args: string[]): string => {
    try {
      return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    commit: git(['rev-parse', '--short', 'HEAD']) || 'unknown',
    srcDirty: git(['status', '--porcelain', '--', 'src']) !== '',
    loadStart: loadavg().map(round2),
  };
}

export function finishMeta(meta: RunMeta): RunMeta {
  return { ...meta, loadEnd: loadavg().map(round2) };
}

export function loadLine(meta: RunMeta): string {
  const l = (x: number[] | undefined) => (x ?? []).map((v) => v.toFixed(2)).join(' ');
  return `load avg ${l(meta.loadStart)} (start) -> ${l(meta.loadEnd)} (end), ${meta.cpus} cpus, node ${meta.node}, commit ${meta.commit}${meta.srcDirty ? ' + uncommitted src/' : ''}`;
}

/** A plain-text table: first column left-aligned, the others right-aligned. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Writes bench/results/<name>.json (the latest figures; committed, see bench/README.md). */
export async function writeResult(name: string, payload: unknown): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  await writeFile(file, `${JSON.stringify(payload, null, 2)}\n`);
  return file;
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

export function fmt(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  return x.toFixed(digits);
}

export function fmtInt(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  return Math.round(x).toLocaleString('en-US');
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
