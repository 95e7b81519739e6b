"""Image sources (the bundled digits, a CIFAR-10 folder) and the image-tile atlas."""

import pickle

import numpy as np
import pytest
from PIL import Image

from jaxgym import images
from jaxgym.images import image_atlas, image_sprite
from jaxgym.sprites import blank_cell


def write_cifar(folder, labels, names=None, seed=0, file="data_batch_1"):
    """A tiny CIFAR-10 python folder: one batch of random images; returns data uint8[n, 3072]."""
    folder.mkdir(exist_ok=True)
    data = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    batch = {b"batch_label": b"test", b"labels": list(labels), b"data": data}
    (folder / file).write_bytes(pickle.dumps(batch, protocol=2))
    if names is not None:
        meta = {b"label_names": [name.encode() for name in names], b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return data


def pairwise_distinct(pictures):
    """True when no two pictures in the list are equal."""
    return len({p.tobytes() for p in pictures}) == len(pictures)


# ---------------------------------------------------------------- the bundled digits


def test_bundled_digits_load_with_distinct_images_and_names():
    source = images.load("digits", images_per_class=8)
    assert source.num_classes == 10 and source.images_per_class == 8
    assert source.class_names[:3] == ("zero", "one", "two") and len(set(source.class_names)) == 10
    assert source.images.shape == (10, 8, 8, 8, 3) and source.images.dtype == np.uint8
    assert all(pairwise_distinct(list(of_class)) for of_class in source.images)
    assert pairwise_distinct([of_class[0] for of_class in source.images])
    # Dark ink on a light background, the same in all three channels.
    assert np.median(source.images) > 200 and source.images.min() < 50
    np.testing.assert_array_equal(source.images[..., 0], source.images[..., 2])
    assert images.load("digits", 8) is source  # cached
    with pytest.raises(ValueError, match="read-only"):
        source.images[0, 0, 0, 0, 0] = 0


def test_bundled_digits_reject_bad_images_per_class():
    assert images.load("digits", 32).images.shape[1] == 32
    with pytest.raises(ValueError, match="32 images of each class.*images_per_class <= 32"):
        images.load("digits", 33)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="images_per_class"):
            images.load("digits", bad)


# ---------------------------------------------------------------- a CIFAR-10 folder


def test_cifar_folder_gives_first_images_of_each_class_in_file_order(tmp_path):
    labels = [2, 0, 1, 0, 2, 1, 0, 2, 1, 1]
    data = write_cifar(tmp_path, labels, names=["cat", "dog", "frog"])
    source = images.load(str(tmp_path), images_per_class=2)
    assert source.class_names == ("cat", "dog", "frog")
    assert source.images.shape == (3, 2, 32, 32, 3)
    first_two = {k: [i for i, label in enumerate(labels) if label == k][:2] for k in range(3)}
    for k, rows in first_two.items():
        for i, row in enumerate(rows):
            np.testing.assert_array_equal(source.images[k, i], images.planes_to_rgb(data[row]))
    # Channel layout: pixel (y, x) = (R plane, G plane, B plane) at 32 * y + x.
    y, x, row = 5, 7, first_two[1][1]
    expected = [data[row, plane * 1024 + 32 * y + x] for plane in range(3)]
    assert list(source.images[1, 1, y, x]) == expected


def test_cifar_folder_reads_later_batches_and_defaults_names(tmp_path):
    write_cifar(tmp_path, [0, 1] * 10, file="data_batch_1", seed=1)
    data = write_cifar(tmp_path, list(range(10)) * 2, file="test_batch", seed=2)
    source = images.load(tmp_path, images_per_class=2)  # no batches.meta: the standard names
    assert source.class_names == images.CIFAR10_NAMES
    # Class 9 appears only in test_batch, at rows 9 and 19.
    np.testing.assert_array_equal(source.images[9], images.planes_to_rgb(data[[9, 19]]))


def test_cifar_folder_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="neither 'digits'.*nor an existing directory"):
        images.load(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="none of the CIFAR-10 batch files"):
        images.load(str(tmp_path))

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "data_batch_1").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match="not a readable CIFAR-10 pickle.*re-extract"):
        images.load(str(corrupt))

    wrong_keys = tmp_path / "wrong_keys"
    wrong_keys.mkdir()
    (wrong_keys / "data_batch_1").write_bytes(pickle.dumps({b"pixels": b"", b"labels": []}))
    with pytest.raises(ValueError, match="lacks the key 'data'"):
        images.load(str(wrong_keys))

    wrong_shape = tmp_path / "wrong_shape"
    wrong_shape.mkdir()
    batch = {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}
    (wrong_shape / "data_batch_1").write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=r"uint8\[n, 3072\]"):
        images.load(str(wrong_shape))

    too_few = tmp_path / "too_few"
    write_cifar(too_few, [0, 0, 0, 1, 2, 2], names=["cat", "dog", "frog"])
    with pytest.raises(ValueError, match="images_per_class=2.*'dog' \\(1\\).*lower"):
        images.load(str(too_few), images_per_class=2)


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        images.load(str(tmp_path))


# ---------------------------------------------------------------- the atlas


def test_atlas_holds_each_image_of_each_class_then_the_empty_cell():
    atlas = image_atlas("digits", classes=3, images_per_class=4, px=16)
    assert atlas.shape == (3 * 4 + 1, 16, 16, 3) and atlas.dtype == np.uint8
    np.testing.assert_array_equal(atlas[-1], blank_cell(16))
    assert pairwise_distinct(list(atlas))
    # The grid line of blank_cell frames every sprite.
    np.testing.assert_array_equal(atlas[:, 0], np.broadcast_to(blank_cell(16)[0], (13, 16, 3)))
    # Same (class, image) gives the same sprite, whatever the other settings.
    more = image_atlas("digits", classes=5, images_per_class=4, px=16)
    np.testing.assert_array_equal(more[: 3 * 4], atlas[:-1])
    # Sprite k * images_per_class + i is image i of class k, resized to the cell's inside.
    source = images.load("digits", 4)
    for k, i in [(0, 0), (2, 1), (2, 3)]:
        np.testing.assert_array_equal(atlas[k * 4 + i], image_sprite(source.images[k, i], 16))
        shrunk = np.asarray(Image.fromarray(atlas[k * 4 + i, 1:-1, 1:-1]).resize((8, 8)))
        correlation = np.corrcoef(shrunk[..., 0].ravel(), source.images[k, i, ..., 0].ravel())
        assert correlation[0, 1] > 0.9


def test_atlas_rejects_more_classes_than_the_source_has():
    with pytest.raises(ValueError, match="classes=11.*10 classes"):
        image_atlas("digits", classes=11, images_per_class=8, px=32)


def test_the_game_plays_on_a_cifar_folder(tmp_path):
    import jax

    import jaxgym
    import render
    from jaxgym import text

    folder = tmp_path / "cifar"
    write_cifar(folder, [k for k in range(4) for _ in range(4)], names=["cat", "dog", "ship", "frog"])
    env = jaxgym.make("shisensho-images", rows=4, cols=4, classes=4, images_per_class=4,
                      image_source=str(folder), tile_px=16)
    state = env.reset(jax.random.key(0))
    assert env.class_names == ("cat", "dog", "ship", "frog")
    words = set(text.perception(env, state).replace("\n", " | ").split(" | "))
    assert words == {"cat", "dog", "ship", "frog"}
    assert render.frame(env, state).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="images"):  # 4 images of each class, not 8
        jaxgym.make("shisensho-images", rows=4, cols=4, classes=4, images_per_class=8, image_source=str(folder))
