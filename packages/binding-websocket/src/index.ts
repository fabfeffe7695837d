export {
  type ConnectWebSocketOptions,
  connectWebSocket,
  negotiatedFormat,
  WEBSOCKET_CAPABILITIES,
  type WebSocketBindingOptions,
  type WebSocketConstructor,
  type WebSocketLike,
  type WebSocketServerCloudEventsOptions,
  webSocketPublisher,
  webSocketServerOptions,
  webSocketSubscriber,
} from "./connection.js";
export {
  formatOfSubprotocol,
  frameBytes,
  frameText,
  fromWebSocketFrame,
  offeredSubprotocols,
  SUBPROTOCOLS,
  subprotocolOf,
  toWebSocketFrame,
  type WebSocketFrame,
} from "./subprotocol.js";
