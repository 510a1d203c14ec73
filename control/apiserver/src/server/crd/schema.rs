//! Structural OpenAPI v3 schemas of CustomResourceDefinitions (placeholder;
//! being written).
