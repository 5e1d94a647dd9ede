"""Fixtures of the rag_runtime tests: a small generated corpus, its index, a live HTTP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Six topics, six sentences each. Document i of a topic is sentence i followed by sentence i+2
# (mod 6), so every document is unique, on one topic, and shares words with two neighbours.
TOPICS: dict[str, dict] = {
    "astronomy": {
        "category": "science", "tmd": "science.astronomy.fact", "tags": ["space"],
        "sentences": [
            "The telescope recorded light from a distant spiral galaxy.",
            "Astronomers tracked the comet as it passed close to the sun.",
            "A neutron star spins hundreds of times every second.",
            "The orbiting probe photographed the frozen moons of the giant planet.",
            "Dark matter shapes how galaxies rotate around their centres.",
            "A solar eclipse happens when the moon covers the sun.",
        ],
    },
    "cooking": {
        "category": "food", "tmd": "lifestyle.cooking.howto", "tags": ["kitchen"],
        "sentences": [
            "Knead the bread dough for ten minutes until it is smooth.",
            "Simmer the tomato sauce slowly with garlic and basil.",
            "Whisk the eggs with sugar before folding in the flour.",
            "Roast the vegetables in a hot oven until they caramelise.",
            "Season the soup with salt and pepper just before serving.",
            "Let the pastry rest in the fridge so the butter stays cold.",
        ],
    },
    "finance": {
        "category": "economy", "tmd": "business.finance.fact", "tags": ["money"],
        "sentences": [
            "The central bank raised interest rates to slow inflation.",
            "Investors sold bonds when the yield curve inverted.",
            "A diversified portfolio spreads risk across many assets.",
            "The company reported record quarterly revenue and profit.",
            "Mortgage payments rise when interest rates go up.",
            "Stock prices fell sharply after the earnings warning.",
        ],
    },
    "medicine": {
        "category": "health", "tmd": "science.medicine.fact", "tags": ["health", "clinical"],
        "sentences": [
            "The vaccine trial showed strong protection against the virus.",
            "Antibiotics treat bacterial infections but not viral ones.",
            "High blood pressure raises the risk of heart disease.",
            "The surgeon repaired the torn ligament in the knee.",
            "Insulin regulates the level of glucose in the blood.",
            "Regular exercise lowers the risk of type 2 diabetes.",
        ],
    },
    "sports": {
        "category": "recreation", "tmd": "lifestyle.sports.news", "tags": ["games"],
        "sentences": [
            "The striker scored twice in the second half of the football match.",
            "The marathon runner finished the race in under three hours.",
            "The tennis final went to a fifth set tie-break.",
            "The cycling team rode up the mountain stage in the rain.",
            "The goalkeeper saved a penalty in the last minute.",
            "The swimmer broke the world record in the relay.",
        ],
    },
    "computing": {
        "category": "technology", "tmd": "technology.software.howto", "tags": ["code"],
        "sentences": [
            "The compiler turns source code into machine instructions.",
            "A database index speeds up queries on large tables.",
            "The web server handles thousands of requests per second.",
            "Unit tests catch regressions before the code is released.",
            "The garbage collector frees memory that is no longer used.",
            "Encryption keeps passwords safe when they are stored.",
        ],
    },
}


def generated_corpus():
    """36 IndexedDoc records with metadata (source, tags, categories, tmd)."""
    from rag_runtime import IndexedDoc

    docs = []
    for topic, spec in TOPICS.items():
        s = spec["sentences"]
        for i in range(len(s)):
            docs.append(IndexedDoc(
                id=f"{topic}-{i}", text=f"{s[i]} {s[(i + 2) % len(s)]}",
                metadata={"source": f"docs/{topic}.md", "tags": spec["tags"], "categories": [spec["category"]],
                          "tmd": spec["tmd"]},
            ))
    return docs


@pytest.fixture(scope="session")
def corpus():
    return generated_corpus()


@pytest.fixture(scope="session")
def rag_index(corpus):
    from rag_runtime import RagIndex

    return RagIndex.build(corpus)


@pytest.fixture(scope="session")
def rag_index_dir(rag_index, tmp_path_factory) -> Path:
    return rag_index.save(tmp_path_factory.mktemp("rag-index") / "index")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a background thread."""

    api_key: str | None = None

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


API_KEY = "test-key-123"


@pytest.fixture(scope="module")
def live_server(rag_index_dir) -> Iterator[LiveServer]:
    """The service over the generated corpus's index, with API-key auth on, default offline model."""
    from rag_runtime import create_app

    with LiveServer(create_app(rag_index_dir, api_key=API_KEY)) as server:
        server.api_key = API_KEY
        yield server


# A tiny BEIR folder (corpus.jsonl with titles): landmarks and how-tos, each one document.
BEIR_DOCS = {
    "eiffel": ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
               "It was built between 1887 and 1889 as the entrance arch of the 1889 World's Fair."),
    "golden-gate": ("Golden Gate Bridge", "The Golden Gate Bridge is a suspension bridge spanning the strait at "
                    "San Francisco Bay. Its towers are painted international orange."),
    "great-wall": ("Great Wall of China", "The Great Wall of China is a series of fortifications across northern "
                   "China. Its walls stretch for thousands of kilometres over mountains and deserts."),
    "sourdough": ("Sourdough starter", "A sourdough starter is a culture of wild yeast and lactic acid bacteria. "
                  "A starter kept on the kitchen counter needs feeding once or twice a day."),
    "tides": ("Tides", "Tides are the rise and fall of sea levels caused by the gravity of the Moon and the Sun. "
              "Most coasts see two high tides every day."),
    "photosynthesis": ("Photosynthesis", "Photosynthesis is how plants turn light, water and carbon dioxide into "
                       "sugar. It releases oxygen as a by-product."),
    "printing-press": ("Printing press", "Johannes Gutenberg introduced the movable-type printing press in Europe "
                       "around 1440. Printed books spread quickly after it."),
    "bicycle-chain": ("Bicycle chain", "A bicycle chain carries power from the pedals to the rear wheel. "
                      "A clean chain needs a drop of oil on each link every few hundred kilometres."),
}


def write_beir_folder(folder: Path) -> Path:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for doc_id, (title, text) in BEIR_DOCS.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    return folder


@pytest.fixture(scope="session")
def beir_index_dir(tmp_path_factory) -> Path:
    """An index built (BM25 + dense) from the tiny BEIR folder above, with ``build_index``."""
    from rag_runtime import build_index

    root = tmp_path_factory.mktemp("beir")
    source = write_beir_folder(root / "landmarks")
    build_index(source, root / "index")
    return root / "index"
