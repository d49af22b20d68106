import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import {
  GEN_DTS_FILE,
  GEN_JS_FILE,
  GENERATED_HEADER,
  generateProto,
} from '../../scripts/gen-proto.js';

// Regenerates the codec in memory and compares it with the committed files. When this fails,
// run `npm run proto` and commit src/contract/gen/.
describe('src/contract/gen (generated from proto/nudge/v1/event.proto)', () => {
  it('is up to date with the .proto and the generator flags', async () => {
    const fresh = await generateProto();
    const [js, dts] = await Promise.all([readFile(GEN_JS_FILE, 'utf8'), readFile(GEN_DTS_FILE, 'utf8')]);
    expect(js.startsWith(GENERATED_HEADER), 'event.js lost its header').toBe(true);
    expect(dts.startsWith(GENERATED_HEADER), 'event.d.ts lost its header').toBe(true);
    // Compared as whole strings so a stale file shows a readable diff.
    expect(js, 'src/contract/gen/event.js is stale: run npm run proto').toBe(fresh.js);
    expect(dts, 'src/contract/gen/event.d.ts is stale: run npm run proto').toBe(fresh.dts);
  }, 60_000);

  it('is deterministic (no timestamps or temp paths in the output)', async () => {
    const [a, b] = [await generateProto(), await generateProto()];
    expect(a).toEqual(b);
    expect(a.js).not.toMatch(/\b20\d\d-\d\d-\d\d\b|\/tmp\//);
    expect(a.dts).not.toMatch(/\b20\d\d-\d\d-\d\d\b|\/tmp\//);
  }, 60_000);

  it('contains only the codec the contract module uses (encode/decode, no fromObject)', async () => {
    const js = await readFile(GEN_JS_FILE, 'utf8');
    expect(js).toContain('AppEvent.encode = function');
    expect(js).toContain('AppEvent.decode = function');
    expect(js).not.toContain('fromObject');
    expect(js).not.toContain('toObject');
    expect(js).not.toContain('verify = function');
    expect(js).toContain('import $protobuf from "protobufjs/minimal.js"');
  });
});
