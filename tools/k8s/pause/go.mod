module kafkaiggy.dev/k8s-test-tools/pause

go 1.24.0
