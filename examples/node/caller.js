'use strict';
// A burrow caller in Node.js, written from docs/asyncapi.yaml (operations callWithReplyQueue and
// callWithDirectReplyTo): it publishes requests to a burrow service and matches every reply to
// its request by correlation_id.
//
//   node caller.js [--url amqp://localhost] [--routing-key burrow.requests] [--service NAME]
//                  [--reply queue|direct] [--reply-queue NAME] [--timeout-ms 30000] < requests.jsonl
//
// --routing-key is the default service's (the request queue's name); --service NAME calls the
// named service NAME instead, whose routing key is its name (parameter routingKey).
// stdin: one request a line, {"id": "...", "body": "...", "timeout_ms": 5000, "service": "NAME",
// "key": "KEY"} (timeout_ms, service and key optional; service "default" is the default service;
// requests with one key go to one partition of a split service, in order); stdout: one line
// per request once it ended, {"id", "correlationId", "status", "body", ...} where status is the
// reply's (ok, error, rejected) or the caller's own: timeout (no reply by the deadline),
// unroutable (no queue for the routing key: no such service), refused (the broker nacked it).

const crypto = require('crypto');
const os = require('os');
const readline = require('readline');
const { parseArgs } = require('util');
const amqp = require('amqplib');
const C = require('./contract');

class Caller {
  /** Connect, set up the reply path (`reply`: "queue" or "direct"), and return a ready caller. */
  static async connect(url, { exchange = C.REQUEST_EXCHANGE, routingKey = C.DEFAULT_ROUTING_KEY,
    reply = 'queue', replyExchange = C.REPLY_EXCHANGE, replyQueue } = {}) {
    const connection = await amqp.connect(url);
    const channel = await connection.createConfirmChannel();
    const caller = new Caller(connection, channel, exchange, routingKey);
    if (reply === 'direct') {
      // Direct reply-to: consume the pseudo-queue, no-ack, on the channel that publishes.
      await channel.consume(C.DIRECT_REPLY_TO, (msg) => caller.onReply(msg), { noAck: true });
      caller.replyTo = C.DIRECT_REPLY_TO;
    } else {
      // A durable queue bound to burrow.x.replies under its own name: replies wait there.
      const queue = replyQueue || `burrow.replies.node-${os.hostname()}-${process.pid}`;
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-expires': 3600000 } });
      await channel.bindQueue(queue, replyExchange, queue);
      await channel.consume(queue, (msg) => { channel.ack(msg); caller.onReply(msg); });
      caller.replyTo = queue;
    }
    // A mandatory request no queue took comes back before its confirm.
    channel.on('return', (msg) => caller.settle(msg.properties.correlationId, { status: 'unroutable' }));
    return caller;
  }

  constructor(connection, channel, exchange, routingKey) {
    this.connection = connection;
    this.channel = channel;
    this.exchange = exchange;
    this.routingKey = routingKey;
    this.prefix = crypto.randomBytes(8).toString('hex');
    this.counter = 0;
    this.pending = new Map(); // correlation_id -> { resolve, timer }
  }

  /**
   * Send `body` (Buffer or string) to `service` (none: the default service) with `key` (none:
   * the correlation id, as the partition key of a split service); resolves to
   * {correlationId, status, body, errorType?, reason?}, never rejects.
   */
  call(body, { timeoutMs = 30000, contentType = C.CONTENT_TYPE, headers = {}, service, key } = {}) {
    const correlationId = `${this.prefix}-${(++this.counter).toString(16)}`;
    const routingKey = C.routingKey(service, this.routingKey);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(correlationId, { status: 'timeout' }), timeoutMs);
      this.pending.set(correlationId, { resolve, timer });
      const now = Date.now();
      this.channel.publish(this.exchange, routingKey, Buffer.from(body), {
        correlationId,
        messageId: correlationId,
        replyTo: this.replyTo,
        contentType,
        persistent: true,
        mandatory: true,
        expiration: String(timeoutMs),
        timestamp: Math.floor(now / 1000),
        headers: {
          [C.TRACEPARENT]: C.newTraceparent(), ...headers, [C.KEY]: key || correlationId, [C.DEADLINE]: now + timeoutMs,
        },
      }, (err) => { if (err) this.settle(correlationId, { status: 'refused' }); });
    });
  }

  /** A reply: settle its request; one for no pending request (late or a duplicate) is dropped. */
  onReply(msg) {
    if (!msg) return; // the broker cancelled the consumer
    const headers = msg.properties.headers || {};
    const status = String(headers[C.STATUS] || 'ok');
    const result = { status, body: msg.content.toString('utf8') };
    if (status === 'error') result.errorType = String(headers[C.ERROR_TYPE]);
    if (status === 'rejected') result.reason = String(headers[C.REJECT_REASON]);
    this.settle(msg.properties.correlationId, result);
  }

  settle(correlationId, result) {
    const request = this.pending.get(correlationId);
    if (!request) return;
    this.pending.delete(correlationId);
    clearTimeout(request.timer);
    request.resolve({ correlationId, ...result });
  }

  async close() {
    await this.connection.close();
  }
}

async function main() {
  const { values } = parseArgs({ options: {
    url: { type: 'string', default: process.env.AMQP_URL || 'amqp://localhost' },
    exchange: { type: 'string', default: C.REQUEST_EXCHANGE },
    'routing-key': { type: 'string', default: C.DEFAULT_ROUTING_KEY },
    service: { type: 'string' },
    reply: { type: 'string', default: 'queue' },
    'reply-exchange': { type: 'string', default: C.REPLY_EXCHANGE },
    'reply-queue': { type: 'string' },
    'timeout-ms': { type: 'string', default: '30000' },
  } });
  const caller = await Caller.connect(values.url, {
    exchange: values.exchange, routingKey: values['routing-key'], reply: values.reply,
    replyExchange: values['reply-exchange'], replyQueue: values['reply-queue'],
  });
  const calls = [];
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const request = JSON.parse(line);
    const timeoutMs = request.timeout_ms || Number(values['timeout-ms']);
    const service = request.service || values.service;
    calls.push(caller.call(request.body, { timeoutMs, service, key: request.key }).then((result) => {
      process.stdout.write(`${JSON.stringify({ id: request.id, ...result })}\n`);
    }));
  }
  await Promise.all(calls);
  await caller.close();
}

module.exports = { Caller };

if (require.main === module) {
  main().catch((err) => { console.error(err); process.exit(1); });
}
