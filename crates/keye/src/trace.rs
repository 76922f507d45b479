//! The intermediate tensors of one request, named, typed and shaped like the reference
//! fixtures' `outputs.safetensors`, so a run can be compared with the official pipeline.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use safetensors::{Dtype, View};

use crate::error::{Error, Result};

/// One recorded tensor, stored little-endian.
#[derive(Clone, Debug)]
pub struct TraceTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl View for &TraceTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Trace {
    tensors: Vec<(String, TraceTensor)>,
}

impl Trace {
    pub fn get(&self, name: &str) -> Option<&TraceTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    pub(crate) fn ints(
        &mut self,
        name: &str,
        shape: &[usize],
        values: impl IntoIterator<Item = i64>,
    ) {
        let data = values.into_iter().flat_map(i64::to_le_bytes).collect();
        self.push(name, Dtype::I64, shape, data);
    }

    pub(crate) fn ints32(&mut self, name: &str, shape: &[usize], values: &[i32]) {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push(name, Dtype::I32, shape, data);
    }

    pub(crate) fn floats(&mut self, name: &str, shape: &[usize], values: &[f32]) {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push(name, Dtype::F32, shape, data);
    }

    pub(crate) fn tensor(&mut self, name: &str, tensor: &Tensor) -> Result<()> {
        let values = tensor.flatten_all()?.to_vec1::<f32>()?;
        self.floats(name, tensor.dims(), &values);
        Ok(())
    }

    fn push(&mut self, name: &str, dtype: Dtype, shape: &[usize], data: Vec<u8>) {
        self.tensors.push((
            name.to_owned(),
            TraceTensor {
                dtype,
                shape: shape.to_vec(),
                data,
            },
        ));
    }

    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
        safetensors::serialize_to_file(
            self.tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(metadata),
            path,
        )
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
    }
}
