//! The tidemark engine.
