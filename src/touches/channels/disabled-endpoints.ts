import type { Redis } from 'ioredis';
import { touchKeys } from '../keys.js';

export interface DisabledEndpoint {
  endpoint: string;
  /** When it was disabled (ms since the epoch). */
  at: number;
  reason: string;
}

/**
 * Endpoints that said they want no more deliveries (410 Gone), shared by all workers in one
 * Redis hash. An operator re-enables one with `enable()` after fixing it.
 */
export class DisabledEndpoints {
  private readonly key: string;

  constructor(private readonly redis: Redis, namespace: string) {
    this.key = touchKeys(namespace).disabledEndpoints;
  }

  async disable(endpoint: string, reason: string, at: number): Promise<void> {
    await this.redis.hset(this.key, endpoint, JSON.stringify({ at, reason }));
  }

  async get(endpoint: string): Promise<DisabledEndpoint | null> {
    const raw = await this.redis.hget(this.key, endpoint);
    return raw === null ? null : parse(endpoint, raw);
  }

  async enable(endpoint: string): Promise<boolean> {
    return (await this.redis.hdel(this.key, endpoint)) > 0;
  }

  async list(): Promise<DisabledEndpoint[]> {
    const all = await this.redis.hgetall(this.key);
    return Object.entries(all).map(([endpoint, raw]) => parse(endpoint, raw));
  }
}

function parse(endpoint: string, raw: string): DisabledEndpoint {
  try {
    const v = JSON.parse(raw) as { at?: unknown; reason?: unknown };
    return { endpoint, at: Number(v.at) || 0, reason: typeof v.reason === 'string' ? v.reason : 'unknown' };
  } catch {
    return { endpoint, at: 0, reason: 'unknown' };
  }
}
