import { formatDuration } from '../config/duration.js';
import type { Condition, Filter, JourneySpec, PolicySpec, PropTest, RulesSpec, StepTiming, Trigger } from './rules-spec.js';

/**
 * The compiled journeys and policy in plain words, for `nudge check-config`: what an operator
 * should read to know what will be sent, to whom, when and how often.
 */
export function describeRules(spec: RulesSpec): string {
  const [first, ...rest] = describePolicy(spec.policy, spec.reportingTimeZone);
  const lines = [`policy  ${first}`, ...rest.map((p) => `        ${p}`)];
  if (spec.journeys.length === 0) lines.push('journeys none');
  for (const j of spec.journeys) lines.push(...describeJourney(j));
  return lines.join('\n');
}

export function describeJourney(j: JourneySpec): string[] {
  const out = [`journey ${j.id} (priority ${j.priority})${j.description ? `: ${j.description}` : ''}`];
  const row = (label: string, text: string) => out.push(`  ${label.padEnd(7)} ${text}`);
  row('when', describeTrigger(j.trigger));
  if (j.conditions.length > 0) row('if', j.conditions.map(describeCondition).join('; and '));
  j.steps.forEach((s, i) => {
    const template = s.template ?? (j.variants.some((v) => v.template !== null) ? `per variant (else ${j.template})` : j.template);
    row(i === 0 ? 'steps' : '', `${s.id}: ${describeTiming(s.timing, i === 0)}, on ${s.channels.join(', else ')}, template ${template}`);
  });
  if (j.exitOn.length > 0) row('exit', `on ${j.exitOn.map(describeFilter).join(', or ')}`);
  row('again', j.reEntry.kind === 'never' ? 'never re-enters' : `may re-enter ${formatDuration(j.reEntry.ms)} after entering`);
  const split = [
    j.variants.length > 0 ? `variants ${j.variants.map((v) => `${v.id} ${share(v.weight / j.variants.reduce((s, x) => s + x.weight, 0))}`).join(', ')}` : 'no variants',
    `holdout ${share(j.holdout)}`,
    j.useGlobalHoldout ? 'global holdout applies' : 'global holdout does not apply',
  ];
  row('split', split.join('; '));
  if (j.conversion) row('goal', `${describeFilter(j.conversion.match)} within ${formatDuration(j.conversion.withinMs)} of entering`);
  if (j.budget) {
    const b = j.budget;
    row('budget', [b.total !== null ? `${b.total} in total` : '', b.perDay !== null ? `${b.perDay} a day` : '', `${b.costPerTouch} per touch`].filter(Boolean).join(', '));
  }
  const policy = [j.ignoreCaps ? 'ignores caps and min gap' : '', j.quietHours ? `${j.quietHours}s in quiet hours` : ''].filter(Boolean);
  if (policy.length > 0) row('policy', policy.join('; '));
  row('payload', j.attributes.length > 0 ? `traits ${j.attributes.join(', ')}` : 'no user data');
  return out;
}

export function describeTrigger(t: Trigger): string {
  switch (t.type) {
    case 'event':
      return describeFilter(t.match);
    case 'count':
      return `the ${ordinal(t.atLeast)} ${describeFilter(t.match)} within ${formatDuration(t.withinMs)} (counter ${t.counter})`;
    case 'inactive':
      return `no ${t.match ? describeFilter(t.match) : 'event'} for ${formatDuration(t.forMs)} (on time, by timer)`;
    case 'notFollowedBy':
      return `${describeFilter(t.first)} not followed by ${describeFilter(t.then)} within ${formatDuration(t.withinMs)}${t.by ? ` (same ${t.by})` : ''}`;
    case 'streak':
      return `streak ${t.streak} reaches ${t.reaches} days`;
    case 'stage':
      return `stage changes${t.from.length > 0 ? ` from ${t.from.join(' or ')}` : ''}${t.to.length > 0 ? ` to ${t.to.join(' or ')}` : ''}`;
    case 'firstTime':
      return `the first ${describeFilter(t.match)}`;
  }
}

export function describeFilter(f: Filter): string {
  const parts = [f.names.length === 0 ? 'any event' : f.names.join(' or ')];
  const props = f.props.map(({ key, test }) => describeProp(key, test));
  if (f.value) props.push(`value ${describeRange(f.value)}`);
  if (props.length > 0) parts.push(`with ${props.join(', ')}`);
  if (f.channels.length > 0) parts.push(`on ${f.channels.join(' or ')}`);
  return parts.join(' ');
}

function describeProp(key: string, t: PropTest): string {
  switch (t.kind) {
    case 'equals':
      return `${key}=${t.value}`;
    case 'in':
      return `${key} in [${t.values.join(', ')}]`;
    case 'exists':
      return t.present ? `${key} present` : `no ${key}`;
    case 'range':
      return `${key} ${describeRange(t.range)}`;
  }
}

function describeRange(r: { gt?: number; gte?: number; lt?: number; lte?: number }): string {
  return [r.gt !== undefined ? `> ${r.gt}` : '', r.gte !== undefined ? `>= ${r.gte}` : '', r.lt !== undefined ? `< ${r.lt}` : '', r.lte !== undefined ? `<= ${r.lte}` : '']
    .filter(Boolean)
    .join(' and ');
}

function describeCondition(c: Condition): string {
  const bounds = (atLeast: number | null, atMost: number | null) =>
    [atLeast !== null ? `at least ${atLeast}` : '', atMost !== null ? `at most ${atMost}` : ''].filter(Boolean).join(' and ');
  let text: string;
  switch (c.kind) {
    case 'stage':
      text = `stage is ${c.stages.join(' or ')}`;
      break;
    case 'trait':
      text = c.exists !== null ? `trait ${c.trait} is ${c.exists ? 'set' : 'not set'}` : `trait ${c.trait} is ${(c.in ?? []).join(' or ')}`;
      break;
    case 'counter':
      text = `counter ${c.counter} within ${formatDuration(c.withinMs)} is ${bounds(c.atLeast, c.atMost)}`;
      break;
    case 'sum':
      text = `sum ${c.sum} is ${bounds(c.atLeast, c.atMost)}`;
      break;
    case 'streak':
      text = `streak ${c.streak} is ${bounds(c.atLeast, c.atMost)} days`;
      break;
    case 'deviceSignups':
      text = `sign-ups from the user's sign-up device within ${formatDuration(c.withinMs)} of theirs (${c.deviceSignups}) are ${bounds(c.atLeast, c.atMost)}`;
      break;
  }
  return c.not ? `not (${text})` : text;
}

function describeTiming(t: StepTiming, first: boolean): string {
  const after = first ? 'the trigger' : 'the previous step';
  const at = t.at === null ? '' : t.at === 'usualActiveHour' ? `usual active hour of the user${t.fallbackAt !== null ? ` (${clock(t.fallbackAt)} until known)` : ''}` : `${clock(t.at)} local time`;
  if (t.delayMs === 0) return at === '' ? (first ? 'at once' : 'right after the previous step') : `at the next ${at} after ${after}`;
  return `${formatDuration(t.delayMs)} after ${after}${at === '' ? '' : `, then at the next ${at}`}`;
}

function describePolicy(p: PolicySpec, reportingTimeZone: string): string[] {
  const defaults = Object.entries(p.consent.channelDefaults).map(([c, g]) => `${c} ${g ? 'granted' : 'denied'}`);
  const parts = [`consent ${p.consent.defaultGranted ? 'granted' : 'denied'} by default${defaults.length > 0 ? ` (${defaults.join(', ')})` : ''}`];
  for (const e of p.consent.events) {
    const channel = e.channel.kind === 'fixed' ? e.channel.channel : `the channel in ${e.channel.prop}`;
    const grant = e.grant.kind === 'fixed' ? (e.grant.grant ? 'opts in to' : 'opts out of') : `opts in or out (prop ${e.grant.prop}) of`;
    parts.push(`${describeFilter(e.match)} ${grant} ${channel}`);
  }
  const q = p.quietHours;
  parts.push(q ? `quiet hours ${clock(q.fromMinute)}-${clock(q.toMinute)} in the user's zone (else ${reportingTimeZone}), ${q.action}${q.channels.length > 0 ? ` on ${q.channels.join(', ')}` : ''}` : 'no quiet hours');
  for (const c of p.caps) {
    const window = c.window.kind === 'rolling' ? `per rolling ${formatDuration(c.window.ms)}` : `per calendar ${c.window.period}`;
    parts.push(`cap ${c.name}: ${c.max} ${window} on ${c.channels.length > 0 ? c.channels.join(', ') : 'all channels together'}`);
  }
  if (p.minGapMs !== null) parts.push(`at least ${formatDuration(p.minGapMs)} between touches`);
  parts.push(`global holdout ${share(p.globalHoldout)}${p.globalHoldout > 0 ? ` (salt ${JSON.stringify(p.holdoutSalt)})` : ''}`);
  return parts;
}

function clock(minute: number): string {
  return `${String(Math.floor(minute / 60)).padStart(2, '0')}:${String(minute % 60).padStart(2, '0')}`;
}

function share(f: number): string {
  return `${Math.round(f * 1000) / 10}%`;
}

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : n % 10 === 1 ? 'st' : n % 10 === 2 ? 'nd' : n % 10 === 3 ? 'rd' : 'th';
  return `${n}${s}`;
}
