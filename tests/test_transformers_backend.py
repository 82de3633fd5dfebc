"""The local transformers backend on a tiny, randomly initialised LLaVA built offline from a config.

The model (CLIP vision tower + Llama text model, a few thousand parameters), a byte-level BPE tokenizer
trained on a sentence and a LLaVA processor with a chat template are saved to a temporary folder, then
loaded back through AutoProcessor / AutoModelForImageTextToText exactly as a downloaded model would be.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from spinebench.backends import BackendError, Item, make_backend
from spinebench.backends.transformers_local import chat_messages

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}"
    "{% endif %}{% endfor %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tiny_llava(folder) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(
        ["This is a simulated medical scenario. My final option: [A] user assistant"], trainer
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llava")
    build_tiny_llava(folder)
    return folder


def png(shade: int, size=(40, 28)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, shade // 2)).save(buffer, format="PNG")
    return buffer.getvalue()


OPTIONS = {
    "A": "Healthy",
    "B": "Osteophytes",
    "C": "Spondylolisthesis",
    "D": "Cervical kyphosis",
    "E": "Vertebral collapse",
}


def items() -> list[Item]:
    # Prompts of different lengths, so that batching has to pad.
    prompts = [
        "My final option",
        "This is a simulated medical scenario with a longer prompt",
        "user assistant [A]",
    ]
    return [
        Item(f"q{i}", f"img{i}", "diagnosis", prompt, OPTIONS, png(40 * i + 20))
        for i, prompt in enumerate(prompts)
    ]


def answer(backend, batch):
    results = []
    backend.run(batch, results.append)
    return results


def make(model_dir, **overrides):
    settings = {
        "backend": "transformers",
        "path": str(model_dir),
        "max_new_tokens": 6,
        "torch_dtype": "float32",
    }
    return make_backend("tiny-llava", {**settings, **overrides})


def test_batched_greedy_generation_matches_one_by_one(model_dir):
    batched = answer(make(model_dir, batch_size=2), items())
    single = answer(make(model_dir, batch_size=1), items())
    assert [r.question_id for r in batched] == ["q0", "q1", "q2"]
    assert all(r.ok and r.attempts == 1 and isinstance(r.response, str) for r in batched)
    # Left padding and attention masks are right: a row's answer does not depend on its batch mates.
    assert [r.response for r in batched] == [r.response for r in single]
    # Greedy decoding is deterministic.
    assert [r.response for r in answer(make(model_dir, batch_size=3), items())] == [
        r.response for r in single
    ]


def test_the_image_reaches_the_model(model_dir):
    backend = make(model_dir, batch_size=1)
    backend.load()
    processor = backend._processor
    item = items()[0]
    text = processor.apply_chat_template(chat_messages(item), add_generation_prompt=True, tokenize=False)
    assert text.startswith("user: <image>My final option")
    inputs = processor(text=[text], images=[[Image.open(io.BytesIO(item.image_png))]], return_tensors="pt")
    # 32x32 image, 8x8 patches: 16 image tokens stand in for <image>.
    assert int((inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<image>")).sum()) == 16
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 32, 32)


def test_text_only_items_work_for_the_judge(model_dir):
    judge_items = [Item("k1", "img0", "diagnosis", "My final option", OPTIONS, None)]
    (result,) = answer(make(model_dir), judge_items)
    assert result.ok and isinstance(result.response, str)


def test_unreadable_image_names_the_item(model_dir):
    bad = [Item("q9", "img9", "diagnosis", "My final option", OPTIONS, b"not a png")]
    with pytest.raises(BackendError, match="q9.*img9 is not a readable PNG"):
        answer(make(model_dir), bad)


def test_settings_and_paths_are_checked(tmp_path, model_dir):
    with pytest.raises(BackendError, match="missing required setting.*path"):
        make_backend("m", {"backend": "transformers"})
    with pytest.raises(BackendError, match="torch_dtype"):
        make(model_dir, torch_dtype="float8")
    with pytest.raises(BackendError, match="is not a folder"):
        answer(make(tmp_path / "absent"), items())
    assert (
        make(model_dir, batch_size=8, device="cpu").fingerprint_data() == make(model_dir).fingerprint_data()
    )
    assert make(model_dir, max_new_tokens=7).fingerprint_data() != make(model_dir).fingerprint_data()
