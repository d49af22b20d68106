import type { StateQueries } from '../state/queries.js';
import type { ActivityWindow } from '../state/activity.js';
import { dayNumber, formatDay, parseDay } from '../time/calendar.js';
import type { JsonResponse, OpsServer } from './ops-server.js';
import type { JourneyStats } from '../state/journey-stats.js';

const WINDOWS: readonly ActivityWindow[] = ['dau', 'wau', 'mau', 'week', 'month'];

export interface QueryRouteOptions {
  clock: () => number;
  reportingTimeZone: string;
  metrics: string[];
  /** Configured breakdown names (`by=`). */
  breakdowns: string[];
  /** Configured journeys, and how to read one's stats. */
  journeys?: Array<{ id: string; description: string; priority: number }>;
  journeyStats?: (journeyId: string) => Promise<JourneyStats>;
  /** The failed-touch view of the delivery queue. */
  failedTouches?: () => Promise<unknown[]>;
}

/** `GET /v1/active`, `/v1/visit-gaps`, `/v1/users/{userId}` and `/v1/stages` (DESIGN §2.3). */
export function registerQueryRoutes(server: OpsServer, queries: StateQueries, o: QueryRouteOptions): void {
  // `metric` and `day` as both activity routes read them; a refusal says what is accepted.
  const metricAndDay = (url: URL): { metric: string; day: number } | JsonResponse => {
    const metric = url.searchParams.get('metric') ?? 'active';
    if (!o.metrics.includes(metric)) {
      return { status: 400, body: { error: `unknown metric "${metric.slice(0, 64)}"; configured metrics: ${o.metrics.join(', ')}` } };
    }
    const dayText = url.searchParams.get('day');
    const day = dayText === null ? dayNumber(o.clock(), o.reportingTimeZone) : parseDay(dayText);
    if (day === null) return { status: 400, body: { error: 'day must be a date like 2026-11-23 (in the reporting time zone)' } };
    return { metric, day };
  };

  server.route('GET', '/v1/active', async (_req, _params, url) => {
    const asked = metricAndDay(url);
    if ('status' in asked) return asked;
    const window = (url.searchParams.get('window') ?? 'dau') as ActivityWindow;
    if (!WINDOWS.includes(window)) {
      return { status: 400, body: { error: `window must be one of ${WINDOWS.join(', ')}` } };
    }
    const by = url.searchParams.get('by') ?? undefined;
    if (by !== undefined && !o.breakdowns.includes(by)) {
      const known = o.breakdowns.length > 0 ? `configured breakdowns: ${o.breakdowns.join(', ')}` : 'none is configured (activity.breakdowns in the config)';
      return { status: 400, body: { error: `unknown breakdown "${by.slice(0, 64)}"; ${known}` } };
    }
    return { status: 200, body: await queries.active(asked.metric, window, asked.day, by) };
  });

  // Days between visits: for the visits on `day`, how many days since the user's previous one.
  server.route('GET', '/v1/visit-gaps', async (_req, _params, url) => {
    const asked = metricAndDay(url);
    if ('status' in asked) return asked;
    const gaps = await queries.visitGaps(asked.metric, asked.day);
    const returning = Object.values(gaps).reduce((a, b) => a + b, 0);
    return { status: 200, body: { metric: asked.metric, day: formatDay(asked.day), returningUsers: returning, daysSincePreviousVisit: gaps } };
  });

  server.route('GET', '/v1/users/:userId', async (_req, params) => {
    const view = await queries.user(params.userId ?? '', o.clock());
    if (view === null) return { status: 404, body: { error: 'no such user: Nudge has not seen an event of this user id' } };
    return { status: 200, body: view };
  });

  server.route('GET', '/v1/stages', async () => ({ status: 200, body: await queries.stageCounts() }));

  server.route('GET', '/v1/touches/failed', async () => {
    if (o.failedTouches === undefined) return { status: 404, body: { error: 'no journeys are configured, so there is no touch queue' } };
    return { status: 200, body: { failed: await o.failedTouches() } };
  });

  server.route('GET', '/v1/journeys', async () => ({ status: 200, body: { journeys: o.journeys ?? [] } }));

  server.route('GET', '/v1/journeys/:journeyId/stats', async (_req, params) => {
    const id = params.journeyId ?? '';
    const known = o.journeys ?? [];
    if (!known.some((j) => j.id === id) || o.journeyStats === undefined) {
      return { status: 404, body: { error: `no journey "${id.slice(0, 64)}"; configured: ${known.map((j) => j.id).join(', ') || 'none (add journeys to the config)'}` } };
    }
    return { status: 200, body: await o.journeyStats(id) };
  });
}
