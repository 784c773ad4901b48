"""Building blocks: attention kernels, activations, beam search, the trie."""
