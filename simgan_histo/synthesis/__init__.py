"""The GAN-free synthesis module (paper §4.1, Fig. 3).

Public API:
  TissueSource.from_paths(paths_or_dir, config, mpp=None, max_tiles=None, workers=1)
  make_batch(source, seed, indices), make_real_pairs(source, seed, indices)
  iterate_batches(source, seed, batch_size, start=0)
  synthesize_to_file(source, out_path, num, seed, workers, config_json)
  write_preview(path, batch)
"""

from simgan_histo.synthesis.generator import iterate_batches
from simgan_histo.synthesis.generator import make_batch
from simgan_histo.synthesis.generator import make_real_pairs
from simgan_histo.synthesis.generator import synthesize_to_file
from simgan_histo.synthesis.generator import write_preview
from simgan_histo.synthesis.source import TissueSource
from simgan_histo.synthesis.tissue import TileRejected
