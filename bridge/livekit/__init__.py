"""The LiveKit-protocol door (Element Call, Element X): the token service that trades a
Matrix OpenID token for a LiveKit access token, the way lk-jwt-service does. The
LiveKit signaling endpoint itself is not built yet (docs/element-call.md)."""
