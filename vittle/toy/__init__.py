"""The toy models and data: the tiny easy-vqa models and the synthetic data sets used by the
demo, the lab and the tests.

- `vittle.toy.tiny`: tiny LLaVAs built from configs, offline (a CLIP tower, or the frozen
  EfficientNet-Lite0 of `vittle.toy.efficientnet`, with a small Llama).
- `vittle.toy.efficientnet`: that tower as a transformers vision model (model type
  "vittle_efficientnet_lite") and its `FeatureCache`.
- `vittle.toy.easyvqa`, `vittle.toy.shapes`, `vittle.toy.captions`: the data.

The core (the modules directly in `vittle`) never imports this package: it reaches it through
the plugin registry (`vittle.plugins`) like any other plugin, as the model.init names "tiny" and
"tiny-efficientnet", the data.synthetic names "shapes", "easyvqa*" and "easyvqa-captions", and
the model type "vittle_efficientnet_lite". Its third-party dependencies come with the `tiny`
extra.
"""
