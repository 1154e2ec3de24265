//! The intent engine of `dwcp ask`: plain English to one platform operation,
//! fully offline.
//!
//! The operations and their slots are the shared spec (`data/intents.json`,
//! a copy kept here). A sentence goes through:
//! 1. [`text`]: words with their place in the text and their shape;
//! 2. [`classifier`]: logistic regression over word, bigram and shape
//!    features gives each intent a probability; the best one below a
//!    threshold, or `none` itself, makes the answer `none`;
//! 3. [`tagger`]: an averaged perceptron labels each word with one of that
//!    intent's slots;
//! 4. [`values`]: each slot's words become the normalized value the spec
//!    describes ("1 GiB" → 1024), and the spec's rules settle the
//!    confusable pairs (a 100% split is a promotion).
//!
//! The model is trained from phrasing templates written for this crate
//! (`data/train.txt`), expanded by [`corpus`] with names and values written
//! the ways people write them; it is committed (`model/ask.model`) and a test
//! rebuilds it bit for bit. `data/heldout.txt` and a disjoint pool of names
//! are never trained on: they give the accuracy figures in `docs/ask.md`.

pub mod classifier;
pub mod corpus;
pub mod engine;
pub mod eval;
pub mod features;
pub mod grammar;
pub mod lexicon;
pub mod model;
pub mod rng;
pub mod spec;
pub mod tagger;
pub mod text;
pub mod train;
pub mod values;

pub use engine::{Engine, NONE, Parse};
pub use spec::{IntentSpec, SlotSpec, SlotType, Spec};
