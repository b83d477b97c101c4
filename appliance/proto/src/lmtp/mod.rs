//! LMTP protocol codec (placeholder; owned by the lmtp engineer).
