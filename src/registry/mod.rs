//! The registry client, the only async module: Docker reference
//! normalisation, auth (bearer tokens, basic, `$DOCKER_CONFIG` credentials),
//! pull and push with retries and digest verification.
//!
//! Uses `store`, `image` and `digest`; talks to the network.
