import type { Logger } from '../../log.js';
import type { ChannelAdapter, SendResult } from '../channel-adapter.js';
import type { TouchJob } from '../touch-job.js';

/**
 * A channel that writes what would be sent to the log: ids, template, variant and the names
 * of the attributes — never their values, which may be personal (a name, an amount).
 */
export class LogAdapter implements ChannelAdapter {
  readonly idempotent = true;
  readonly maxSendMs = 1_000;

  constructor(
    private readonly log: Logger,
    readonly channel = 'log',
  ) {}

  async send(job: TouchJob): Promise<SendResult> {
    this.log.info(
      {
        touchId: job.touchId,
        userId: job.userId,
        journeyId: job.journeyId,
        stepId: job.stepId,
        channel: job.channel,
        template: job.template,
        variant: job.variant,
        sendAt: job.sendAt,
        attributeNames: Object.keys(job.attributes),
      },
      'touch (log channel): would send',
    );
    return { kind: 'ok' };
  }
}
