'use strict';
// A burrow worker in Node.js, written from docs/asyncapi.yaml (operation serveRequests): it
// serves a service's request queue in place of a burrow consumer, so burrow's callers (the Python
// Producer, the producer daemon's HTTP API) get its answers.
//
//   node worker.js [--url amqp://localhost] [--queue burrow.requests] [--service NAME] [--prefetch 16]
//
// --queue is the default service's request queue (topology.request_queue); --service NAME serves
// the named service NAME instead, on its queue <queue>.<NAME>.
// Prints "worker ready on <queue>" once it consumes; SIGTERM or SIGINT stops it after the requests in hand.
// The queue belongs to burrow's topology (declared by burrow's daemons or the deployment), so it
// is only checked here, not declared.

const { parseArgs } = require('util');
const amqp = require('amqplib');
const C = require('./contract');

/**
 * The example's work: answer "node worker: <body>". A body "error:<message>" raises, to show an
 * error reply; "sleep:<ms> ..." answers after that many milliseconds, to show a slow handler.
 */
async function handle(body) {
  const text = body.toString('utf8');
  if (text.startsWith('error:')) throw new RangeError(text.slice('error:'.length));
  if (text.startsWith('sleep:')) await new Promise((r) => setTimeout(r, parseInt(text.slice('sleep:'.length), 10)));
  return Buffer.from(`node worker: ${text}`);
}

class Worker {
  constructor(channel, queue, replyExchange, work) {
    this.channel = channel;
    this.queue = queue;
    this.replyExchange = replyExchange;
    this.work = work;
    this.returned = new Set(); // correlation ids of replies the broker returned as unroutable
    this.inHand = 0;
    channel.on('return', (msg) => this.returned.add(msg.properties.correlationId));
  }

  async start(prefetch) {
    await this.channel.checkQueue(this.queue);
    await this.channel.prefetch(prefetch);
    const { consumerTag } = await this.channel.consume(this.queue, (msg) => this.onRequest(msg));
    this.consumerTag = consumerTag;
  }

  /** One request: dead-letter it, answer it as rejected, or run the work and answer. */
  async onRequest(msg) {
    if (!msg) return;
    const { correlationId, replyTo } = msg.properties;
    const headers = msg.properties.headers || {};
    if (!correlationId || !replyTo) {
      console.error(`dead-lettering a malformed request (no ${correlationId ? 'reply_to' : 'correlation_id'})`);
      this.channel.nack(msg, false, false);
      return;
    }
    this.inHand += 1;
    const deadline = headers[C.DEADLINE];
    let reply;
    if (Number.isInteger(deadline) && Date.now() > deadline) {
      reply = { body: Buffer.from('expired before processing (deadline passed)'),
        headers: { [C.STATUS]: 'rejected', [C.REJECT_REASON]: 'stale' } };
    } else {
      try {
        reply = { body: await this.work(msg.content), headers: { [C.STATUS]: 'ok' } };
      } catch (err) {
        reply = { body: Buffer.from(String(err.message)), headers: { [C.STATUS]: 'error', [C.ERROR_TYPE]: err.name } };
      }
    }
    if (headers[C.TRACEPARENT]) reply.headers[C.TRACEPARENT] = String(headers[C.TRACEPARENT]);
    this.answer(msg, reply);
  }

  /** Publish the reply with a confirm; only then ack the request (or dead-letter it if rejected or unroutable). */
  answer(msg, reply) {
    const { correlationId, replyTo } = msg.properties;
    const { exchange, direct } = C.replyRoute(replyTo, this.replyExchange);
    this.channel.publish(exchange, replyTo, reply.body, {
      correlationId, contentType: C.CONTENT_TYPE, headers: reply.headers, persistent: !direct, mandatory: !direct,
    }, (err) => {
      this.inHand -= 1;
      if (err) {
        this.channel.nack(msg, false, true); // the broker refused the reply: the request comes back
      } else if (this.returned.delete(correlationId)) {
        console.error(`dead-lettering request ${correlationId}: its reply to ${replyTo} was unroutable`);
        this.channel.nack(msg, false, false);
      } else if (reply.headers[C.STATUS] === 'rejected') {
        this.channel.nack(msg, false, false); // its caller has been told
      } else {
        this.channel.ack(msg);
      }
    });
  }

  /** Stop taking requests, let those in hand finish (at most `timeoutMs`), then return. */
  async drain(timeoutMs) {
    await this.channel.cancel(this.consumerTag);
    const until = Date.now() + timeoutMs;
    while (this.inHand > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await this.channel.waitForConfirms();
  }
}

async function main() {
  const { values } = parseArgs({ options: {
    url: { type: 'string', default: process.env.AMQP_URL || 'amqp://localhost' },
    queue: { type: 'string', default: C.DEFAULT_ROUTING_KEY },
    service: { type: 'string' },
    'reply-exchange': { type: 'string', default: C.REPLY_EXCHANGE },
    prefetch: { type: 'string', default: '16' },
  } });
  const connection = await amqp.connect(values.url);
  const channel = await connection.createConfirmChannel();
  const queue = C.serviceQueue(values.service, values.queue);
  const worker = new Worker(channel, queue, values['reply-exchange'], handle);
  await worker.start(Number(values.prefetch));
  console.log(`worker ready on ${queue}`);
  const stop = async () => {
    await worker.drain(30000);
    await connection.close();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

module.exports = { Worker, handle };

if (require.main === module) {
  main().catch((err) => { console.error(err); process.exit(1); });
}
