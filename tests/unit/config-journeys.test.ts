import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeConfig, loadConfig } from '../../src/config/load.js';
import { STAGE_NAMES } from '../../src/config/rule-fields.js';
import { ErrorCodes, NudgeError } from '../../src/errors.js';
import { compileRules } from '../../src/rules/compile-rules.js';
import { describeRules } from '../../src/rules/describe-rules.js';
import { STAGES } from '../../src/state/lifecycle.js';

/** The journeys, policy and touches sections: the example playbook, compilation, and precise errors. */

const PLAYBOOK = fileURLToPath(new URL('../../config/examples/banking-playbook.yaml', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'nudge-journeys-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let count = 0;
function configFile(lines: readonly string[]): string {
  const dir = join(root, String(count++));
  mkdirSync(dir);
  const file = join(dir, 'nudge.yaml');
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

function refused(lines: readonly string[]): NudgeError {
  try {
    loadConfig({ file: configFile(lines), env: {} });
  } catch (err) {
    if (err instanceof NudgeError) return err;
    throw err;
  }
  throw new Error('expected loadConfig to refuse the config');
}

const BEHAVIOUR = [
  'behaviour:',
  '  counters:',
  '    - { name: loan_views, match: { name: page_view, props: { page: loan_detail } }, keep: 3, within: 24h }',
  '  streaks:',
  '    - { name: checkin, match: { name: checkin } }',
  '  traits: [segment]',
];

/** A file with the behaviour above and one journey, whose lines start at line 8. */
const withJourney = (...journey: string[]) => [...BEHAVIOUR, 'journeys:', ...journey];

describe('the example banking playbook', () => {
  it('validates, compiles to frozen plain data, and every journey names its trigger', () => {
    const cfg = loadConfig({ file: PLAYBOOK, env: {} });
    const spec = compileRules(cfg);
    expect(Object.isFrozen(spec)).toBe(true);
    expect(Object.isFrozen(spec.journeys[0]!.trigger)).toBe(true);
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec); // plain data, no Sets or Maps
    expect(spec.journeys.map((j) => [j.id, j.trigger.type])).toEqual([
      ['high-value-rm', 'firstTime'],
      ['transfer-abandoned', 'notFollowedBy'],
      ['salary-autoinvest', 'event'],
      ['win-back', 'inactive'],
      ['referral-reward', 'event'],
      ['loan-interest', 'count'],
      ['fund-interest', 'count'],
      ['checkin-7', 'streak'],
      ['checkin-3', 'streak'],
    ]);
    const loan = spec.journeys.find((j) => j.id === 'loan-interest')!;
    expect(loan.trigger).toEqual({
      type: 'count',
      counter: 'loan_views',
      match: { names: ['page_view'], channels: [], props: [{ key: 'page', test: { kind: 'equals', value: 'loan_detail' } }], value: null },
      atLeast: 3,
      withinMs: 86_400_000,
    });
    expect(loan).toMatchObject({ holdout: 0.1, reEntry: { kind: 'cooldown', ms: 14 * 86_400_000 }, attributes: ['first_name_initial'] });
    const winback = spec.journeys.find((j) => j.id === 'win-back')!;
    expect(winback.steps.map((s) => [s.id, s.timing, s.channels, s.template])).toEqual([
      ['sms', { delayMs: 0, at: 600, fallbackAt: null }, ['sms'], null],
      ['push-follow-up', { delayMs: 3 * 86_400_000, at: 600, fallbackAt: null }, ['push'], 'winback_push'],
    ]);
    expect(spec.policy.quietHours).toEqual({ fromMinute: 1320, toMinute: 480, action: 'defer', channels: ['push', 'sms'] });
    expect(cfg.touches.channels.rm_task).toMatchObject({ adapter: 'webhook', webhook: { url: 'https://crm.bank.example/hooks/nudge', timeoutMs: 5000, allowPrivateAddresses: false } });
  });

  it('is described in plain words, without the webhook secret', () => {
    const cfg = loadConfig({ file: PLAYBOOK, env: {} });
    const text = `${describeConfig(cfg)}\n${describeRules(compileRules(cfg))}`;
    expect(text).toContain('  when    transfer_start not followed by transfer_done within 30m (same flow_id)');
    expect(text).toContain('  when    the 3rd page_view with page=loan_detail within 1d (counter loan_views)');
    expect(text).toContain('  when    no event for 14d (on time, by timer)');
    expect(text).toContain('          push-follow-up: 3d after the previous step, then at the next 10:00 local time, on push, template winback_push');
    expect(text).toContain('  steps   offer: at the next usual active hour of the user (12:00 until known) after the trigger, on push, template autoinvest_offer');
    expect(text).toContain('  split   variants A 50%, B 50%; holdout 10%; global holdout applies');
    expect(text).toContain('cap push_daily: 2 per calendar day on push');
    expect(text).toContain("quiet hours 22:00-08:00 in the user's zone (else Asia/Shanghai), defer on push, sms");
    expect(text).toContain('channel rm_task: webhook adapter to https://crm.bank.example/hooks/nudge, secret (set), timeout 5s');
    expect(text).not.toContain('whsec_');
  });
});

describe('journeys: each mistake names file:line:col, the path and what was expected', () => {
  const base = ['  - id: j', '    channel: push', '    template: t'];

  it('a trigger type that does not exist', () => {
    const err = refused(withJourney(...base, '    trigger: { type: evnt, match: { name: x } }'));
    expect(err.code).toBe(ErrorCodes.CONFIG_INVALID);
    expect(err.message).toContain('nudge.yaml:11:22: journeys[0].trigger.type: expected one of event, count, inactive, notFollowedBy, streak, stage, firstTime, got "evnt"');
  });

  it('a bad duration, with the path inside the trigger', () => {
    const err = refused(withJourney(...base, '    trigger: { type: notFollowedBy, first: { name: a }, then: { name: b }, within: 30 minutes }'));
    expect(err.message).toContain('nudge.yaml:11:84: journeys[0].trigger.within: expected a duration like "30m", got "30 minutes"');
  });

  it('a field the trigger type does not take, and one it needs', () => {
    const err = refused(withJourney(...base, '    trigger: { type: event, reaches: 3 }'));
    expect(err.message).toContain('nudge.yaml:11:29: journeys[0].trigger.reaches: does not apply to an event trigger (it takes match)');
    expect(err.message).toContain('nudge.yaml:11:5: journeys[0].trigger.match: required for an event trigger');
  });

  it('an unknown key, with the key it is close to', () => {
    const err = refused(withJourney('  - id: j', '    chanel: push', '    template: t', '    trigger: { type: event, match: { name: x } }'));
    expect(err.message).toContain('nudge.yaml:9:5: journeys[0].chanel: unknown key "chanel" (did you mean "channel"?)');
    expect(err.message).toContain('journeys[0].channel: required (expected a channel like push or a list of them)');
  });

  it('bad shares, times of day, re-entry and channel names', () => {
    const err = refused(
      withJourney(
        '  - id: j',
        '    channel: Push',
        '    template: t',
        '    trigger: { type: event, match: { name: x } }',
        '    holdout: 10',
        '    reEntry: always',
        '    steps:',
        '      - { id: s, at: 10:00 }',
        '      - { id: s2, at: 2200 }',
      ),
    );
    expect(err.message).toContain('nudge.yaml:9:14: journeys[0].channel: expected a channel name like "push" (lower-case letters, digits, "_", "-"; at most 32), got "Push"');
    expect(err.message).toContain('nudge.yaml:12:14: journeys[0].holdout: expected a share from 0% to 90% (like "10%" or 0.1), got 10');
    expect(err.message).toContain('nudge.yaml:13:14: journeys[0].reEntry: expected never or { cooldown: 30d }, got "always"');
    expect(err.message).toContain('nudge.yaml:16:23: journeys[0].steps[1].at: expected a time of day like "10:00" or usualActiveHour, got 2200');
    expect(err.message).not.toContain('steps[0].at'); // "10:00" unquoted is a string in YAML 1.2
  });

  it('conditions: exactly one kind, with the fields of that kind', () => {
    const err = refused(withJourney(...base, '    trigger: { type: event, match: { name: x } }', '    conditions:', '      - { stage: active, atLeast: 2 }', '      - { sum: s }', '      - { stage: asleep }'));
    expect(err.message).toContain('nudge.yaml:13:26: journeys[0].conditions[0].atLeast: does not apply to a stage condition');
    expect(err.message).toContain('nudge.yaml:14:9: journeys[0].conditions[1]: a sum condition needs atLeast, atMost or both');
    expect(err.message).toContain('nudge.yaml:15:18: journeys[0].conditions[2].stage: expected a lifecycle stage (new, active, dormant, churned, reactivated), got "asleep"');
  });

  it('duplicate journey and step ids, reported together with other problems', () => {
    const j = (id: string) => [`  - id: ${id}`, '    channel: push', '    template: t', '    trigger: { type: event, match: { name: x } }'];
    const err = refused(withJourney(...j('a'), '    steps: [{ id: s }, { id: s }]', ...j('a'), '    holdout: 200%'));
    expect(err.message).toContain('nudge.yaml:12:30: journeys[0].steps[1].id: "s" is used twice; ids must be unique');
    expect(err.message).toContain('nudge.yaml:13:9: journeys[1].id: "a" is used twice; ids must be unique');
    expect(err.message).toContain('journeys[1].holdout: expected a share');
  });

  it('references to behaviour that does not exist or cannot count that far', () => {
    const err = refused(
      withJourney(
        '  - id: a',
        '    channel: push',
        '    template: t',
        '    trigger: { type: count, counter: loan_views, atLeast: 5 }',
        '    attributes: [phone]',
        '    conditions: [{ trait: tier, in: [gold] }, { sum: nope, atLeast: 1 }]',
        '  - id: b',
        '    channel: push',
        '    template: t',
        '    trigger: { type: streak, streak: login, reaches: 3 }',
      ),
    );
    expect(err.message).toContain('nudge.yaml:11:38: journeys[0].trigger.counter: the counter keeps the last 3 events, so it cannot count 5; raise its keep to at least 5');
    expect(err.message).toContain('nudge.yaml:12:18: journeys[0].attributes[0]: is not a kept trait, so it would always be empty; add it to behaviour.traits (kept: segment)');
    expect(err.message).toContain('nudge.yaml:13:27: journeys[0].conditions[0].trait: is not a kept trait');
    expect(err.message).toContain('journeys[0].conditions[1].sum: names no behaviour sum; define it under behaviour.sums (defined: none)');
    expect(err.message).toContain('nudge.yaml:17:38: journeys[1].trigger.streak: names no behaviour streak; define it under behaviour.streaks (defined: checkin)');
  });

  it('a holdout without a conversion, quiet-hours override without quiet hours, a channel touches does not define', () => {
    const err = refused([
      'touches:',
      '  channels: { push: { adapter: log } }',
      ...withJourney('  - id: j', '    channel: [push, sms]', '    template: t', '    trigger: { type: event, match: { name: x } }', '    holdout: 10%', '    quietHours: drop'),
    ]);
    expect(err.message).toContain('journeys[0].channel[1]: names a channel touches.channels does not define (defined: push)');
    expect(err.message).toContain('journeys[0].holdout: a holdout measures nothing without a conversion');
    expect(err.message).toContain('journeys[0].quietHours: is set but policy.quietHours is not');
  });

  it('props comparisons and filter values', () => {
    const err = refused(withJourney(...base, '    trigger: { type: event, match: { name: x, props: { amount: [1, 2] }, value: { gt: 1, gte: 2 } } }'));
    expect(err.message).toContain('journeys[0].trigger.match.props.amount: expected a value to equal, { in: [...] }, { exists: true } or a comparison like { gte: 100 }, got a list of 2 entries');
    expect(err.message).toContain('journeys[0].trigger.match.value.gte: use gt or gte, not both');
  });
});

describe('policy and touches: errors', () => {
  it('a cap needs exactly one window; quiet hours need a time of day in quotes', () => {
    const err = refused(['policy:', '  caps:', '    - { name: c1, max: 2 }', '    - { name: c2, max: 99, per: day }', '  quietHours: { from: 2200, to: "08:00" }']);
    expect(err.message).toContain("nudge.yaml:3:7: policy.caps[0]: needs exactly one of within (a rolling window like 24h) or per (day, week or month, calendar in the user's zone)");
    expect(err.message).toContain('nudge.yaml:4:24: policy.caps[1].max: expected a number of at most 50, got 99');
    expect(err.message).toContain('nudge.yaml:5:23: policy.quietHours.from: expected a time of day like "22:00" (24-hour, local to the user), got 2200 (put it in quotes)');
  });

  it('consent events need a channel and a choice; a global holdout above 50% is refused', () => {
    const err = refused(['policy:', '  consent:', '    events:', '      - { match: { name: stop } }', '  globalHoldout: 60%']);
    expect(err.message).toContain('policy.consent.events[0]: needs exactly one of channel (a channel name) or channelProp (the prop naming the channel)');
    expect(err.message).toContain('policy.consent.events[0]: needs exactly one of grant (true/false) or grantProp');
    expect(err.message).toContain('policy.globalHoldout: expected a share from 0% to 50%');
  });

  it('a webhook channel needs a URL and a secret; log channels take no webhook fields', () => {
    const err = refused(['touches:', '  channels:', '    crm: { adapter: webhook }', '    push: { adapter: log, url: "https://x.example" }', '    Bad: { adapter: log }']);
    expect(err.message).toContain('touches.channels.crm.url: required for the webhook adapter');
    expect(err.message).toContain('touches.channels.crm.secret: required for the webhook adapter');
    expect(err.message).toContain('nudge.yaml:4:27: touches.channels.push.url: only applies to the webhook adapter');
    expect(err.message).toContain('nudge.yaml:5:5: touches.channels.Bad: expected a channel name like "push" as the key, got "Bad"');
  });
});

describe('the journey language and the state core agree', () => {
  it('names the same lifecycle stages', () => {
    expect([...STAGE_NAMES]).toEqual([...STAGES]);
  });
});
