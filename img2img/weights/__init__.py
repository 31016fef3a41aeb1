"""Weights: our format (`format`: safetensors + card), named models (`catalog`), the one explicit
download (`pull`), and converters for released checkpoints (`convert/`, one module per source)."""
