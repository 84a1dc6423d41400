pub fn patch_strategy(_definition: &str, _field: &str) -> Option<(&'static str, Option<&'static str>)> { None }
