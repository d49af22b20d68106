import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { testConfig } from '../support/engine-harness.js';
import { exitOf } from '../../src/dev/redis-server.js';

const BIN = fileURLToPath(new URL('../../bin/nudge.js', import.meta.url));

/**
 * `nudge worker` on its own (DESIGN §2.4): it starts delivery workers, serves /metrics where the
 * deliveries happen (every configured channel's results starting at 0, so dashboards read 0,
 * not "no data"), and stops cleanly on SIGINT.
 */
describe('nudge worker', () => {
  it('serves its delivery metrics and stops on Ctrl-C', async () => {
    const { file } = testConfig(`
redis: { url: ${inject('redisUrl')}, keyPrefix: w${process.pid} }
http: { port: 0 }
touches: { queue: worker-cmd-${process.pid}, channels: { push: { adapter: log } } }
journeys:
  - { id: welcome, trigger: { type: event, match: { name: register } }, channel: push, template: welcome, useGlobalHoldout: false }
`);
    const child = spawn(process.execPath, [BIN, 'worker', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NUDGE_CONFIG: '' } });
    const exited = exitOf(child);
    let stderr = '';
    child.stderr.setEncoding('utf8');
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no metrics URL in 60 s; stderr: ${stderr}`)), 60_000);
      child.stderr.on('data', (chunk: string) => {
        stderr += chunk;
        const m = /metrics on (http:\/\/\S+)\/metrics/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1] as string);
        }
      });
    });
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toContain('nudge_touch_deliveries_total{channel="push",result="sent"} 0');
    expect(text).toContain('nudge_touch_deliveries_total{channel="push",result="rejected"} 0');
    child.kill('SIGINT');
    expect(await exited).toMatchObject({ code: 0 });
  }, 90_000);
});
