"""Optional bridges to other libraries; importing this package never requires them."""
