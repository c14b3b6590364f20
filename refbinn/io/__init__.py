"""File handling: atomic writes, trees of arrays as .npz entries, Generator states as JSON."""
from .atomic import (atomic_savez, atomic_write, json_dumps, jsonable, new_file_mode, remove_partials, save_figure,
                     write_json)
from .rng import generator_from_json, generator_state_json
from .tree import tree_from_arrays, tree_to_arrays
