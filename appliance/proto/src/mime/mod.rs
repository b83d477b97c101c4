//! MIME message analysis (placeholder; owned by the mime engineer).
