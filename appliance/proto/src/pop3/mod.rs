//! POP3 (RFC 1939): being written.
