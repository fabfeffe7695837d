export {
  createPublisher,
  createSubscriber,
  type Endpoint,
  listTransports,
  loadDriver,
  openEndpoint,
} from "./endpoint.js";
