"""Neuron pages from Python on tiny models, against direct computations: activations and extreme
sentences against captured activations, eta^2 against the two-pass formula, the cosine change of
deactivating one neuron against a hooked forward pass, the vocabulary projection against the
weights; the HTML pages parse and link every neuron; save -> load round trip; bad inputs."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import EXAMPLES
from transfer_neurons import detect, read_pairs
from transfer_neurons.analyses import neuron_pages
from transfer_neurons.analyses.specificity import name_sets
from transfer_neurons.artifacts import names, neuron_html
from transfer_neurons.artifacts.io import read_tensors, write_tensors
from transfer_neurons.artifacts.neurons import NeuronSet, read_neurons
from transfer_neurons.artifacts.result import read_manifest
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.metrics import vocab
from transfer_neurons.model.adapters import module_weight

CONFIG = neuron_pages.NeuronPagesConfig(top_n=3, tokens=6, sentences=2, bootstrap=50, batch_size=4)


def detected_sets(lm, folder, neuron_types=("type1", "type2"), top_n=10):
    pairs = read_pairs(EXAMPLES, "ja", 16)
    for neuron_type in neuron_types:
        detect(lm, pairs, neuron_type, top_n=top_n, batch_size=8).save(folder / neuron_type)
    return name_sets([read_neurons(folder / neuron_type) for neuron_type in neuron_types])


def sentences_of(n: int = 10) -> dict[str, list[str]]:
    pairs = read_pairs(EXAMPLES, "ja", 40)
    return {"ja": pairs.l2[20 : 20 + n], "en": pairs.en[20 : 20 + n]}


@pytest.fixture(scope="module")
def llama_pages(tiny, tmp_path_factory):
    lm = tiny("llama")
    folder = tmp_path_factory.mktemp("sets")
    sets = detected_sets(lm, folder)
    return lm, sets, folder, neuron_pages.run(lm, sets, sentences_of(), CONFIG)


def test_cards_are_the_union_of_the_top_n(llama_pages):
    _, sets, _, result = llama_pages
    expected = list(dict.fromkeys(n for s in sets.values() for n in s.neurons(3)))
    assert [(c["layer"], c["neuron"]) for c in result.cards] == expected
    for card in result.cards:
        assert [e["set"] for e in card["sets"]] == ["ja-type1", "ja-type2"]
        for e in card["sets"]:
            listed = sets[e["set"]].neurons()
            key = (card["layer"], card["neuron"])
            if key in listed:
                assert e["rank"] == listed.index(key) + 1 and e["score"] == sets[e["set"]].top[e["rank"] - 1][2]
            assert e["in_top"] == (key in listed[:3])
        assert len(card["promoted"]) == 6 and len(card["suppressed"]) == 6
    assert result.n_sentences == {"ja": 10, "en": 10}
    assert result.sets["ja-type1"]["centroids"] and not result.sets["ja-type1"]["centred"]


def test_activations_and_sentences_equal_captured_ones(llama_pages):
    lm, sets, _, result = llama_pages
    texts = sentences_of()
    for card in result.cards[:4]:
        layer, neuron = card["layer"], card["neuron"]
        everything = []
        for lang, sentences in texts.items():
            acts = collect(lm, sentences, ("act",), layers=[layer])["act"][0][:, neuron].double().numpy()
            everything.append(acts)
            stats = card["activation"][lang]
            assert stats["n"] == len(sentences)
            assert stats["mean"] == pytest.approx(acts.mean(), abs=1e-5)
            assert stats["sd"] == pytest.approx(acts.std(ddof=1), abs=1e-5)
            assert stats["median"] == pytest.approx(np.median(acts), abs=1e-5)
            order = sorted(range(len(acts)), key=lambda k, acts=acts: -acts[k])
            top = card["sentences"][lang]["top"]
            assert [r["text"] for r in top] == [sentences[k] for k in order[:2]]
            assert [r["act"] for r in top] == pytest.approx([acts[k] for k in order[:2]], abs=1e-5)
            bottom = card["sentences"][lang]["bottom"]
            assert [r["text"] for r in bottom] == [sentences[k] for k in order[::-1][:2]]
        # eta^2 of ja vs rest by the textbook two-pass formula
        values, labels = np.concatenate(everything), np.array([1] * 10 + [0] * 10)
        between = sum(((values[labels == g].mean() - values.mean()) ** 2) * (labels == g).sum() for g in (0, 1))
        eta2 = between / ((values - values.mean()) ** 2).sum()
        assert card["sets"][0]["eta2_target"] == pytest.approx(eta2, abs=1e-6)


def test_deactivating_one_neuron_moves_the_state_by_minus_a_u(llama_pages):
    lm, _, folder, result = llama_pages
    ja = sentences_of()["ja"]
    centroids = read_tensors(folder / "type1" / names.CENTROIDS)["centroids"]
    for card in result.cards[:3]:
        layer, neuron = card["layer"], card["neuron"]
        normal = collect(lm, ja, ("h", "act"), layers=[layer])
        h, a = normal["h"][0], normal["act"][0][:, neuron]
        with apply_intervention(lm, Intervention.of([(layer, neuron)], 0.0, "last")):
            off = collect(lm, ja, ("h",), layers=[layer])["h"][0]
        u = lm.adapter.value_vectors(lm.model, layer)[neuron].float()
        torch.testing.assert_close(off - h, -a[:, None] * u, rtol=0, atol=1e-5)
        c = centroids[layer]
        c = c.double()[None]
        expected = F.cosine_similarity(off.double(), c) - F.cosine_similarity(h.double(), c)
        change = card["sets"][0]["cos_change"]
        assert change["value"] == pytest.approx(float(expected.mean()), abs=1e-6)
        assert change["n"] == len(ja) and change["ci"][0] <= change["value"] <= change["ci"][1]
        texts = [t for sentences in sentences_of().values() for t in sentences]
        mean_state = collect(lm, texts, ("h",), layers=[layer])["h"][0].double().mean(0)
        dims = vocab.massive_dimensions(mean_state)
        assert card["massive"]["dims"] == dims
        if dims:
            assert card["massive"]["share"] == pytest.approx(float(u[dims].pow(2).sum() / u.pow(2).sum()), rel=1e-5)


def test_gemma_post_norm_cards(tiny, tmp_path):
    """Under a post-MLP norm: u = g * v, the cosine change is the frozen-norm one (per-token scale),
    and the vocabulary projection goes through the final norm's (1 + weight) gain."""
    lm = tiny("gemma3_text")
    sets = detected_sets(lm, tmp_path, ("type2",), top_n=4)
    result = neuron_pages.run(lm, sets, sentences_of(6), CONFIG.model_copy(update={"top_n": 2}))
    ja = sentences_of(6)["ja"]
    centroids = read_tensors(tmp_path / "type2" / names.CENTROIDS)["centroids"]
    w_u, norm = module_weight(lm.model.get_output_embeddings()).float(), lm.adapter.final_norm_module(lm.model)
    with torch.no_grad():  # the final norm's gain from its own forward: rms(ones) = 1
        final_gain = norm(torch.ones(1, lm.hidden_size))[0] * (1 + norm.eps) ** 0.5
    for card in result.cards:
        layer, neuron = card["layer"], card["neuron"]
        u = lm.adapter.value_vectors(lm.model, layer)[neuron].float() * lm.adapter.post_norm_gain(lm.model, layer)
        logits = w_u @ (final_gain * u)
        assert [t["id"] for t in card["promoted"]] == logits.argsort(descending=True)[:6].tolist()
        captured = collect(lm, ja, ("h", "act", "scale"), layers=[layer])
        h, a, scale = captured["h"][0].double(), captured["act"][0][:, neuron].double(), captured["scale"][0].double()
        moved = h - (a * scale)[:, None] * u.double()
        c = centroids[layer].double()[None]
        expected = F.cosine_similarity(moved, c) - F.cosine_similarity(h, c)
        assert card["sets"][0]["cos_change"]["value"] == pytest.approx(float(expected.mean()), abs=1e-6)


class Parsed(HTMLParser):
    """Start and end tags, attributes and text of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.starts: list[str] = []
        self.ends: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.starts.append(tag)
        self.attrs += [(name, value or "") for name, value in attrs]

    def handle_endtag(self, tag):
        self.ends.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse(path) -> Parsed:
    page = Parsed(path.read_text(encoding="utf-8"))
    for tag in ("html", "body", "table", "tr", "td", "th", "h1", "h2", "p", "div", "script", "style", "code"):
        assert page.starts.count(tag) == page.ends.count(tag), (path, tag)
    links = [value for name, value in page.attrs if name in ("src", "href")]
    outside = [link for link in links if not link.startswith("data:") and ("http" in link or "//" in link)]
    assert not outside, outside  # nothing from the network
    images = [base64.b64decode(link.partition(",")[2]) for link in links if link.startswith("data:image/png;base64,")]
    assert not [image for image in images if b"http" in image]  # not even in the PNGs' metadata
    return page


def test_pages_parse_link_every_neuron_and_load_back(llama_pages, tmp_path):
    _, _, _, result = llama_pages
    out = result.save(tmp_path / "pages")
    files = read_manifest(out, "neurons")["files"]
    index = parse(out / names.NEURON_INDEX)
    assert "addEventListener('click'" in (out / names.NEURON_INDEX).read_text() and ("id", "filter") in index.attrs
    hrefs = {value for name, value in index.attrs if name == "href"}
    for card in result.cards:
        name = names.neuron_card(card["layer"], card["neuron"])
        assert name in hrefs and name in files
        page = parse(out / name)
        text = " ".join(page.text)
        assert f"Layer {card['layer']}, neuron {card['neuron']}" in text
        assert (
            neuron_html.shown_token(card["promoted"][0]) in text and card["sentences"]["ja"]["top"][0]["text"] in text
        )
        assert any(name == "src" and value.startswith("data:image/png;base64,") for name, value in page.attrs)
        assert ("href", "../index.html") in page.attrs
    assert len(index.starts) and index.starts.count("tr") == 1 + sum(
        max(1, sum(e["in_top"] for e in c["sets"])) for c in result.cards
    )
    assert neuron_html.shown_token({"token": "\ufffd", "piece": "<0xE3>"}) == "<0xE3>"  # a byte: its piece
    assert neuron_html.shown_token({"token": " the", "piece": "Ġthe"}) == " the"
    assert neuron_html.shown_token({"token": "a\nb\t\x7f", "piece": "x"}) == "a\\nb\\t\\x7f"
    again = neuron_pages.NeuronPages.load(out)
    assert again.cards == result.cards and again.sets == result.sets and again.config == result.config
    assert again.n_sentences == result.n_sentences
    assert len(out.joinpath(names.NEURON_ROWS).read_text().splitlines()) == len(result.cards)
    assert result.summary_lines()[0].startswith(f"{len(result.cards)} neuron pages for ja-type1, ja-type2")


def test_without_sentences_and_ranks_from_scores(llama_pages, tmp_path):
    lm, sets, folder, _ = llama_pages
    scores = read_tensors(folder / "type1" / names.SCORES)["scores"]
    listed = set(sets["ja-type1"].neurons())
    neuron = next((0, i) for i in range(lm.mlp_width) if (0, i) not in listed)
    result = neuron_pages.run(lm, sets, {}, CONFIG, neurons=[neuron])
    (card,) = result.cards
    entry = card["sets"][0]
    value = scores[neuron]
    assert entry["score"] == pytest.approx(float(value))
    assert entry["rank"] == 1 + int((scores[~scores.isnan()] > value).sum()) and not entry["in_top"]
    assert card["sets"][1]["rank"] is None  # layer 0 is no Type-2 candidate
    assert card["activation"] == {} and card["massive"] is None and entry["cos_change"] is None
    stale = tmp_path / "bare" / names.neuron_card(0, 0)
    stale.parent.mkdir(parents=True)
    stale.write_text("a card of an earlier run")
    result.save(tmp_path / "bare")
    parse(tmp_path / "bare" / names.neuron_card(*neuron))
    assert [p.name for p in stale.parent.iterdir()] == [f"{neuron[0]}_{neuron[1]}.html"]


def test_bad_inputs(llama_pages, tmp_path):
    lm, sets, _, _ = llama_pages
    with pytest.raises(InputError, match="lies outside the model"):
        neuron_pages.run(lm, sets, {}, CONFIG, neurons=[(0, lm.mlp_width)])
    other = {"x": NeuronSet(((lm.num_layers, 1, 1.0),), "ja", "type1")}
    with pytest.raises(InputError, match="another model"):
        neuron_pages.run(lm, other, {}, CONFIG)
    with pytest.raises(InputError, match="which no --data covers"):
        neuron_pages.run(lm, sets, {"ko": ["안녕하세요"]}, CONFIG)
    write_tensors(tmp_path / names.CENTROIDS, {"centroids": torch.zeros(lm.num_layers, lm.hidden_size + 1)})
    wider = {"x": NeuronSet(((0, 1, 1.0),), "ja", "type1", source=str(tmp_path / names.NEURONS))}
    with pytest.raises(InputError, match="another model"):
        neuron_pages.run(lm, wider, {}, CONFIG)
