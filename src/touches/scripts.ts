import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

/**
 * The one loader of the touches' Lua scripts (STYLE.md habit 4): `lua/<camelName>-<numKeys>.lua`,
 * each headed by its KEYS, ARGV and Output. ioredis runs them with EVALSHA and falls back to EVAL.
 */
export interface TouchScripts {
  nudgeClearOutbox(outbox: string, rejected: string, added: number, rejectedCount: number, ...pairs: string[]): Promise<number>;
  nudgeBeginSend(ledger: string, leaseMs: number, ttlMs: number, owner: string): Promise<[number, string]>;
  nudgeReleaseSend(ledger: string, lease: string): Promise<number>;
  nudgeReserveSendSlot(next: string, reservation: string, intervalMs: number, keepMs: number): Promise<number>;
  nudgeReserveBudget(budget: string, reservation: string, cost: number, total: string | number, perDay: string | number, day: number, keepMs: number): Promise<number>;
}

const SCRIPTS: Array<[keyof TouchScripts, string]> = [
  ['nudgeClearOutbox', 'clearOutbox-2'],
  ['nudgeBeginSend', 'beginSend-1'],
  ['nudgeReleaseSend', 'releaseSend-1'],
  ['nudgeReserveSendSlot', 'reserveSendSlot-2'],
  ['nudgeReserveBudget', 'reserveBudget-2'],
];

const sources = new Map<string, string>();
function source(file: string): string {
  let lua = sources.get(file);
  if (lua === undefined) {
    lua = readFileSync(new URL(`./lua/${file}.lua`, import.meta.url), 'utf8');
    sources.set(file, lua);
  }
  return lua;
}

/** Defines the scripts on a client (once per client) and returns it typed with them. */
export function withTouchScripts(redis: Redis): Redis & TouchScripts {
  for (const [name, file] of SCRIPTS) {
    if (typeof (redis as unknown as Record<string, unknown>)[name] !== 'function') {
      const numberOfKeys = Number(file.slice(file.lastIndexOf('-') + 1));
      redis.defineCommand(name, { lua: source(file), numberOfKeys });
    }
  }
  return redis as Redis & TouchScripts;
}
