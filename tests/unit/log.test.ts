import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../src/log.js';

describe('createLogger', () => {
  it('writes one JSON object per line with level, time, component and message', () => {
    const out = new PassThrough();
    const chunks: string[] = [];
    out.on('data', (c: Buffer) => chunks.push(c.toString()));
    const log = createLogger({ destination: out, name: 'engine' });
    log.info({ partition: 3 }, 'lane assigned');
    log.flush?.();
    const line = JSON.parse(chunks.join('').trim());
    expect(line).toMatchObject({ level: 'info', component: 'engine', partition: 3, msg: 'lane assigned' });
    expect(typeof line.time).toBe('string');
  });

  it('redacts props, device ids, passwords, tokens and touch attributes even when passed by mistake', () => {
    const out = new PassThrough();
    const chunks: string[] = [];
    out.on('data', (c: Buffer) => chunks.push(c.toString()));
    const log = createLogger({ destination: out });
    log.warn(
      {
        event: { props: { phone: '+8613800138000' }, deviceId: 'dev-secret-1' },
        password: 'hunter2-pw',
        redis: { password: 'redis-pw-9' },
        attributes: { name: 'Zhang Wei' },
      },
      'something odd',
    );
    const text = chunks.join('');
    for (const secret of ['+8613800138000', 'dev-secret-1', 'hunter2-pw', 'redis-pw-9', 'Zhang Wei']) expect(text).not.toContain(secret);
    expect(text).toContain('[redacted]');
  });
});
