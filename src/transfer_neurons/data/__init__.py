"""Input data: parallel pairs, sentences, the UDHR corpus, hub loaders, QA and multiple-choice sets."""
