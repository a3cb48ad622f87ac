"""LitData's ``StreamingDataLoader`` with one fix for Lightning's resume (imports ``litdata``: import it lazily).

After ``load_state_dict`` LitData's loader stays in "restore" mode until an iterator runs to its end
(``StopIteration``). Lightning stops an epoch by counting batches and never exhausts the iterator, so the
epoch after a resumed one replayed the resumed epoch's order (checked: an uninterrupted fit vs one resumed
mid-epoch from a checkpoint). :class:`ResumableStreamingDataLoader` leaves restore mode once the restored
epoch has handed out all its batches, so the next epoch gets LitData's next shuffle.
"""

from __future__ import annotations

from typing import Any

from litdata import StreamingDataLoader


class ResumableStreamingDataLoader(StreamingDataLoader):
    """``litdata.StreamingDataLoader`` whose next epoch after a resumed one is a new epoch (see the module).

    Same arguments and batches as ``StreamingDataLoader``; built by
    :meth:`~ssl_lightning.data.streaming_datamodule.StreamingImageDataModule.streaming_loader`.

    Example config: none; the streaming DataModule builds it.
    """

    def __iter__(self) -> Any:
        if self.restore and self.batch_size and self._num_samples_yielded_streaming >= len(self) * self.batch_size:
            self.restore = False  # the restored epoch is complete: start the next one
        return super().__iter__()
