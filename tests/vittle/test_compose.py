import torch
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from vittle.compose import compose_llava
from vittle.data import ImageEncoder, encode_query
from vittle.toy.tiny import build_tiny_processor


def test_compose_joins_pretrained_parts_with_a_new_projector(tmp_path, image):
    processor = build_tiny_processor()
    tokenizer = processor.tokenizer
    torch.manual_seed(0)
    vision = CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=2))
    language = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False))
    vision.save_pretrained(tmp_path / "clip")
    processor.image_processor.save_pretrained(tmp_path / "clip")
    language.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")

    model, composed = compose_llava(str(tmp_path / "clip"), str(tmp_path / "lm"))
    composed_vision, original_vision = model.model.vision_tower.state_dict(), vision.state_dict()
    assert composed_vision.keys() == original_vision.keys()
    for key, value in original_vision.items():
        torch.testing.assert_close(composed_vision[key], value)
    torch.testing.assert_close(model.lm_head.weight, language.lm_head.weight)
    torch.testing.assert_close(model.model.language_model.layers[1].mlp.up_proj.weight, language.model.layers[1].mlp.up_proj.weight)
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    assert model.model.multi_modal_projector.linear_1.weight.abs().sum() > 0
    item = encode_query(composed, ImageEncoder(composed), image, "What is it?")
    assert int((item["input_ids"] == model.config.image_token_id).sum()) == 16
    with torch.no_grad():
        logits = model(input_ids=item["input_ids"][None], pixel_values=item["pixel_values"][None]).logits
    assert logits.shape == (1, len(item["input_ids"]), len(tokenizer)) and torch.isfinite(logits).all()
