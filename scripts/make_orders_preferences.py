"""Writes examples/orders/preference_{train,valid}.jsonl: preference pairs for DPO after SFT on examples/orders.

The SFT set (scripts/make_orders_dataset.py) teaches the answer's shape on tidy messages: the city, colour and item are
always spelled as the vocabulary spells them, so the SFT model learns to copy them. These prompts are the same task on
messier messages, in wordings the SFT set never uses: the city in capitals, lower case or its local name ("Wien",
"Lisboa"), the colour capitalised, the quantity as a capitalised word ("Three"), item plurals. Then copying is wrong.

chosen: the canonical answer, exactly the SFT target's form: json.dumps of {item, color, quantity, city} in that key
order, item singular and colour lower case from the vocabulary, quantity a JSON number, city its English name in the
vocabulary's casing.
rejected: the same order with one fault of the kinds a tuned or base model gives (about one pair in ten has a second
one, prose or a fence around an already wrong answer):
  copied   the city / colour / item as the message spells them ("BERLIN", "Wien", "Red", "mugs")
  string   the quantity as a string ("two", "2")
  prose    a sentence before or after the JSON
  fence    the JSON in a ```json code fence
  keys     a key renamed (colour, product, qty, destination, ...) or left out
  layout   other key order or indented JSON
Every rejected answer differs from its chosen one; a reader can tell which fault it has by comparing the two.
Prompts are unique, and disjoint from examples/orders/{train,valid}.jsonl and between the two files written here.

The vocabularies (items, colors, cities, numbers) are read from make_orders_dataset.py's source (it writes files when
imported). Seeded, no network, so the files regenerate identically:
    python3 scripts/make_orders_preferences.py
"""
import ast, json, os, random
from collections import Counter

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
folder = os.path.join(root, "examples", "orders")


def vocabularies():
    tree = ast.parse(open(os.path.join(root, "scripts", "make_orders_dataset.py")).read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("items", "colors", "cities", "numbers"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["items"], found["colors"], found["cities"], found["numbers"]


items, colors, cities, numbers = vocabularies()
instruction = "Extract the order as JSON with keys item, color, quantity, city.\n"
plurals = {"t-shirt": "t-shirts", "water bottle": "water bottles", "scarf": "scarves"}
# Local names: the answer still takes the English one from the vocabulary.
local = {"Vienna": "Wien", "Lisbon": "Lisboa", "Prague": "Praha", "Rome": "Roma", "Warsaw": "Warszawa",
         "Athens": "Athina", "Zurich": "Zürich"}
# Wordings none of make_orders_dataset.py's templates use.
templates = [
    "hey, can u ship {q} {c} {i} to {city}? thx",
    "Shipping address: {city}. Items: {q} {i}, colour {c}.",
    "{q} {i} please, {c} ones, going to {city}.",
    "My sister in {city} wants {q} {c} {i} for her birthday. Can you send them?",
    "ORDER REQUEST - {q} {c} {i} - deliver to {city}",
    "Could I get {q} of your {c} {i}? Address is in {city}.",
    "Deliver to {city}: {q} {i} in {c}.",
    "Good morning, we'd like to order {q} {c} {i}. Our shop is in {city}. Thanks!",
    "Need {q} {i} ({c}), shipping to {city} please",
    "Quick one: {q} {c} {i} to {city}, thanks a lot.",
    "Is it possible to have {q} {c} {i} sent to {city} by Friday?",
    "For our team in {city}: {q} {i}, all {c}.",
]
prose_before = ["Sure! Here is the order as JSON:\n", "Here is the extracted order:\n", "The order is:\n",
                "Of course. Extracted JSON:\n"]
prose_after = ["\nLet me know if you need anything else!", "\nI hope this helps.",
               "\n\nThis JSON contains the item, color, quantity and city of the order."]
renames = {"item": ["product", "name", "items"], "color": ["colour", "colors"], "quantity": ["qty", "amount", "count"],
           "city": ["destination", "location", "address"]}
fault_kinds = ["copied", "string", "prose", "fence", "keys", "layout"]


def message(rng):
    item, color, city, quantity = rng.choice(items), rng.choice(colors), rng.choice(cities), rng.randint(1, 10)
    word = numbers[quantity]
    q = rng.choice([str(quantity), word, word.capitalize()])
    said_item = plurals.get(item, item + "s") if quantity > 1 else item
    said_color = rng.choice([color, color, color.capitalize(), color.upper()])
    r = rng.random()
    said_city = (local[city] if city in local and r < 0.35 else
                 city.upper() if r < 0.6 else city.lower() if r < 0.85 else city)
    text = rng.choice(templates).format(q=q, c=said_color, i=said_item, city=said_city)
    order = {"item": item, "color": color, "quantity": quantity, "city": city}
    said = {"item": said_item, "color": said_color, "quantity": q, "city": said_city}
    return instruction + text, order, said


def faulty(rng, kind, order, said):
    """The order's answer with one fault of `kind`, or None where the kind does not apply to this message."""
    o = dict(order)
    if kind == "copied":
        differing = [k for k in ("city", "color", "item") if said[k] != order[k]]
        if not differing:
            return None
        for k in rng.sample(differing, rng.choice([1, len(differing)])):
            o[k] = said[k]
        return json.dumps(o)
    if kind == "string":
        o["quantity"] = rng.choice([numbers[order["quantity"]], str(order["quantity"]), said["quantity"]])
        return json.dumps(o)
    if kind == "prose":
        body = json.dumps(o)
        return rng.choice([rng.choice(prose_before) + body, body + rng.choice(prose_after),
                           rng.choice(prose_before) + body + rng.choice(prose_after)])
    if kind == "fence":
        body = json.dumps(o, indent=2) if rng.random() < 0.5 else json.dumps(o)
        return "```json\n" + body + "\n```"
    if kind == "keys":
        key = rng.choice(list(o))
        if rng.random() < 0.6:
            new = rng.choice(renames[key])
            o = {(new if k == key else k): v for k, v in o.items()}
        else:
            del o[key]
        return json.dumps(o)
    if kind == "layout":
        if rng.random() < 0.5:
            return json.dumps(o, indent=rng.choice([2, 4]))
        keys = list(o)
        while keys == list(order):
            rng.shuffle(keys)
        return json.dumps({k: o[k] for k in keys})
    raise ValueError(kind)


def rejected_answer(rng, n, order, said):
    first = fault_kinds[n % len(fault_kinds)]  # cycle, so every kind is about a sixth of the pairs
    answer = faulty(rng, first, order, said)
    while answer is None:
        first = rng.choice(fault_kinds)
        answer = faulty(rng, first, order, said)
    kinds = [first]
    if rng.random() < 0.2 and first in ("copied", "string", "keys"):
        # a second fault on top: the wrapped or fenced form of an already wrong answer
        second = rng.choice(["prose", "fence"])
        answer = (rng.choice(prose_before) + answer) if second == "prose" else "```json\n" + answer + "\n```"
        kinds.append(second)
    return answer, kinds


def main():
    rng = random.Random(2027)
    seen = set()
    for name in ("train", "valid"):
        for line in open(os.path.join(folder, f"{name}.jsonl")):
            seen.add(json.loads(line)["messages"][0]["content"])
    sft_prompts = len(seen)
    for name, count in [("preference_train", 320), ("preference_valid", 48)]:
        kinds = Counter()
        with open(os.path.join(folder, f"{name}.jsonl"), "w") as fh:
            n = 0
            while n < count:
                prompt, order, said = message(rng)
                if prompt in seen:
                    continue
                seen.add(prompt)
                chosen = json.dumps(order)
                rejected, faults = rejected_answer(rng, n, order, said)
                assert rejected != chosen
                kinds.update(faults)
                fh.write(json.dumps({"prompt": [{"role": "user", "content": prompt}],
                                     "chosen": [{"role": "assistant", "content": chosen}],
                                     "rejected": [{"role": "assistant", "content": rejected}]}, ensure_ascii=False) + "\n")
                n += 1
        print(f"{name}: {count} pairs, faults {dict(sorted(kinds.items()))}")
    print(f"prompts unique and disjoint from the {sft_prompts} SFT prompts")


if __name__ == "__main__":
    main()
