"""The FlashMM operator console (Textual). It reads engine snapshots and sends controls; the engine
(`flashmm`) never imports it."""
