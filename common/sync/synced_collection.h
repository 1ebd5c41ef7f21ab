// Moved to registration_collection.h (the file is named after its class);
// this forwarding header stays until its last includers, which another
// branch is editing, include the new name.
#pragma once

#include "common/sync/registration_collection.h"
