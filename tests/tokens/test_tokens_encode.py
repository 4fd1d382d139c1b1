"""Token ids: known values, control strings as the trainers' HF tokenizers map them."""
from __future__ import annotations

import pytest
from lorafiles.tokens import SUPPORTED_MODELS, get_model
from lorafiles.tokens.mistral import MistralV02


@pytest.fixture(scope="module")
def mistral():
    return get_model("mistral-7b-instruct-v0.2")


@pytest.fixture(scope="module")
def mistral_non_legacy():
    return MistralV02(legacy=False)


# --- Mistral v0.2: SentencePiece v1 --------------------------------------------------------------
def test_mistral_hello_world_is_sentencepiece(mistral):
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    sp = MistralTokenizer.v1().instruct_tokenizer.tokenizer
    assert mistral.encode("Hello world") == sp.encode("Hello world", bos=False, eos=False) == [22557, 1526]
    assert [sp.id_to_piece(i) for i in mistral.encode("Hello world")] == ["▁Hello", "▁world"]


def test_mistral_bos_eos_unk_are_control_tokens(mistral):
    assert mistral.encode("<s>") == [1]
    assert mistral.encode("</s>") == [2]
    assert mistral.encode("<unk>") == [0]
    assert mistral.encode("a</s>b") == [264, 2, 287]                 # ▁a </s> ▁b: the prefix restarts


def test_mistral_inst_is_plain_text(mistral):
    assert mistral.encode("[INST]") == [733, 16289, 28793]            # ▁[ INST ]
    assert mistral.encode("[/INST]") == [733, 28748, 16289, 28793]    # ▁[ / INST ]


def test_mistral_dummy_prefix_after_control_tokens(mistral, mistral_non_legacy):
    """Legacy HF tokenizer: `<s> [INST]` is <s> ▁ ▁[ INST ]; non-legacy (and mistral-common): <s> ▁[ INST ]."""
    assert mistral.encode("<s> [INST] hi [/INST]") == [1, 28705, 733, 16289, 28793, 12014, 733, 28748, 16289, 28793]
    assert mistral_non_legacy.encode("<s> [INST] hi [/INST]") == [1, 733, 16289, 28793, 12014, 733, 28748, 16289,
                                                                  28793]
    # the Mistral cookbook's "Tokenizer V1" table: <s> ▁[ INST ] ▁user ▁message ▁[ / INST ] ▁assistant ▁message </s>
    text = "<s> [INST] user message [/INST] assistant message</s> [INST] new user message [/INST]"
    assert mistral_non_legacy.encode(text) == [1, 733, 16289, 28793, 2188, 2928, 733, 28748, 16289, 28793, 13892,
                                               2928, 2, 733, 16289, 28793, 633, 2188, 2928, 733, 28748, 16289,
                                               28793]
    legacy = mistral.encode(text)
    assert len(legacy) == 25 and legacy[1] == 28705 and legacy[14] == 28705


def test_mistral_spaces_newlines_bytes(mistral):
    assert mistral.encode("a\n\nb") == [264, 13, 13, 28726]           # ▁a <0x0A> <0x0A> b
    assert mistral.encode("  Hello  world ") == [259, 22557, 28705, 1526, 28705]
    assert mistral.encode("— → é") == [1040, 15672, 1233]
    assert mistral.encode("") == []


# --- Llama 3.1 -------------------------------------------------------------------------------------
def test_llama_ids():
    llama = get_model("llama-3.1-8b-instruct")
    assert llama.encode("Hello world") == [9906, 1917]
    assert llama.encode("\n\n") == [271]
    specials = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|finetune_right_pad_id|>": 128004,
                "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eom_id|>": 128008,
                "<|eot_id|>": 128009, "<|python_tag|>": 128010, "<|reserved_special_token_2|>": 128005,
                "<|reserved_special_token_3|>": 128011, "<|reserved_special_token_247|>": 128255}
    for text, token_id in specials.items():
        assert llama.encode(text) == [token_id]
    assert len(llama.special_ids) == 256 and set(llama.special_ids.values()) == set(range(128000, 128256))
    # derived from the vocabulary itself: the ids decode back to the bytes of the text
    enc = llama._enc
    assert [enc.decode_single_token_bytes(i) for i in (9906, 1917, 271)] == [b"Hello", b" world", b"\n\n"]
    header = llama.encode("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert header[0] == 128006 and header[-2:] == [128007, 271]
    assert enc.decode_single_token_bytes(header[1]) == b"assistant"


# --- Qwen 2.5 --------------------------------------------------------------------------------------
def test_qwen_ids():
    qwen = get_model("qwen2.5-7b-instruct")
    assert qwen.encode("Hello world") == [9707, 1879]
    assert qwen.encode("<|endoftext|>") == [151643]
    assert qwen.encode("<|im_start|>") == [151644]
    assert qwen.encode("<|im_end|>") == [151645]
    assert qwen.encode("<tool_call>") == [151657] and qwen.encode("<|file_sep|>") == [151664]
    assert len(qwen.encode("<think>")) > 1                          # a Qwen 3 token, plain text in Qwen 2.5
    assert qwen.encode("<|im_start|>user\n") == [151644, 872, 198]
    assert qwen._enc.decode_single_token_bytes(872) == b"user" and qwen._enc.decode_single_token_bytes(198) == b"\n"
    assert qwen.encode("e\u0301") == qwen.encode("\u00e9")          # NFC, as HF's Qwen2 normaliser


# --- OpenAI o200k ----------------------------------------------------------------------------------
def test_o200k_hello_world_and_framing():
    gpt = get_model("openai-gpt-4o")
    assert gpt.encode("hello world") == [24912, 2375]
    assert gpt.encode("<|start|>user<|message|>hi<|end|>") == [200006, 1428, 200008, 3686, 200007]
    assert gpt.encode("<|endoftext|>") == [199999] and gpt.encode("<|endofprompt|>") == [200018]
    import quicktok

    harmony = quicktok.get_encoding("o200k_harmony")
    for text in ("<|start|>", "<|message|>", "<|end|>"):
        assert gpt.encode(text) == [harmony.encode_single_token(text)]


def test_openai_counts_are_the_cookbooks():
    """num_tokens_from_messages: 3 per message + tokens of role and content, +3 reply priming."""
    import quicktok

    enc = quicktok.get_encoding("o200k_base")
    messages = [{"role": "system", "content": "You are a helpful, pattern-following assistant."},
                {"role": "user", "content": "Help me translate — “hello” → Spanish."},
                {"role": "assistant", "content": "Hola."},
                {"role": "user", "content": "And “good night”?"}]
    cookbook = sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages) + 3
    gpt = get_model("openai-gpt-4o")
    assert len(gpt.encode(gpt.render(messages, add_generation_prompt=True))) == cookbook
    full = messages + [{"role": "assistant", "content": "Buenas noches."}]
    assert len(gpt.encode(gpt.render(full))) == cookbook + len(enc.encode("Buenas noches.")) + 1   # + <|end|>


# --- every model -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_control_tokens(model_id):
    model = get_model(model_id)
    expected = {
        "mistral-7b-instruct-v0.2": {"[INST]", "[/INST]", "<s>", "</s>", "<unk>"},
        "llama-3.1-8b-instruct": {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                  "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
                                  "<|finetune_right_pad_id|>", "<|reserved_special_token_0|>"},
        "qwen2.5-7b-instruct": {"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>"},
        "openai-gpt-4o": {"<|start|>", "<|message|>", "<|end|>", "<|endoftext|>", "<|endofprompt|>"},
    }[model_id]
    assert expected <= model.control_tokens
    for token in model.control_tokens:                   # each is one id, except Mistral's plain-text [INST]
        if token not in ("[INST]", "[/INST]"):
            assert len(model.encode(token)) == 1, token
    rendered = model.render([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    assert any(token in rendered for token in model.control_tokens)


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_encode_restarts_after_control_strings(model_id):
    """HF cuts added tokens out first: the text on either side is tokenised on its own."""
    model = get_model(model_id)
    token = min(t for t in model.control_tokens if t not in ("[INST]", "[/INST]"))
    left, right = "Rent →", " 1,800 — ok"
    assert model.encode(left + token + right) == model.encode(left) + model.encode(token) + model.encode(right)
