// @im-gateway/client: the JavaScript SDK of the gateway (browsers and Node 20).
export { GatewayClient } from './client.js';
export { Message, GatewayError, ERROR_CODES, RETRYABLE, PROTOCOL } from './codec.js';
export { Backoff } from './backoff.js';
