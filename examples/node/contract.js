'use strict';
// burrow's wire contract as docs/asyncapi.yaml states it: names shared by caller.js and worker.js.

const crypto = require('crypto');

module.exports = {
  // channels.requests: the direct exchange, and the default service's routing key (the name of
  // its request queue, topology.request_queue).
  REQUEST_EXCHANGE: 'burrow.x.requests',
  DEFAULT_ROUTING_KEY: 'burrow.requests',
  DEFAULT_SERVICE: 'default',
  // channels.replies and channels.directReplyTo: the two reply paths.
  REPLY_EXCHANGE: 'burrow.x.replies',
  DIRECT_REPLY_TO: 'amq.rabbitmq.reply-to',
  CONTENT_TYPE: 'application/octet-stream',
  // Message headers (x-amqp-field: header).
  DEADLINE: 'x-burrow-deadline',
  STATUS: 'x-burrow-status',
  ERROR_TYPE: 'x-burrow-error-type',
  REJECT_REASON: 'x-burrow-reject-reason',
  TRACEPARENT: 'traceparent',
  // What a service split over several queues hashes to pick one (parameters.routingKey, rule
  // partitioned): the caller's key, else the correlation id.
  KEY: 'x-burrow-key',

  /** A new W3C traceparent (a new, sampled trace). */
  newTraceparent() {
    return `00-${crypto.randomBytes(16).toString('hex')}-${crypto.randomBytes(8).toString('hex')}-01`;
  },

  /**
   * The routing key of `service` (parameter routingKey): the request queue's name for the default
   * service (none, or "default"), the service's own name for a named one.
   */
  routingKey(service, requestQueue = module.exports.DEFAULT_ROUTING_KEY) {
    return !service || service === module.exports.DEFAULT_SERVICE ? requestQueue : service;
  },

  /** The request queue of `service`: `requestQueue` for the default service, else `<requestQueue>.<service>`. */
  serviceQueue(service, requestQueue = module.exports.DEFAULT_ROUTING_KEY) {
    return !service || service === module.exports.DEFAULT_SERVICE ? requestQueue : `${requestQueue}.${service}`;
  },

  /** Where a reply to `replyTo` goes: the default exchange for direct reply-to, else burrow.x.replies. */
  replyRoute(replyTo, replyExchange) {
    const direct = replyTo.startsWith(module.exports.DIRECT_REPLY_TO);
    return { exchange: direct ? '' : replyExchange, direct };
  },
};
